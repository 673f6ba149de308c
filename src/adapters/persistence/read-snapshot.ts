import type { DatabaseLocation } from './database-url.js'
import { sql, type Kysely } from './kysely.js'
import type { DatabaseSchema } from './schema.js'
import { openSqliteReader } from './sqlite.js'

/** An open read-only transaction, and how to end it (and free what it holds). */
export interface OpenSnapshot {
  db: Kysely<DatabaseSchema>
  close(): Promise<void>
}

/**
 * How long a PostgreSQL snapshot may wait between two reads, on a slow reader of the export
 * (a pipe into `less`): longer than the service's transactions may (IDLE_IN_TRANSACTION_MS),
 * not forever, as it holds back vacuum until it ends.
 */
export const SNAPSHOT_IDLE_MS = 10 * 60_000

/**
 * Opens read snapshots of the database at `location` (see Transactor.readSnapshot).
 * - PostgreSQL: a REPEATABLE READ, READ ONLY transaction on a connection of the pool.
 * - A SQLite file: a deferred transaction on a read-only connection of its own, opened for it,
 *   so that the service's connection stays free and writers go on (WAL mode); the WAL cannot be
 *   checkpointed past the snapshot, so it grows by what is written until the snapshot ends.
 * - In-memory SQLite, whose one connection is the only way to the data: a deferred transaction
 *   on it, which holds it, and every other statement waits for the snapshot's end.
 */
export function snapshotOpener (location: DatabaseLocation, db: Kysely<DatabaseSchema>, lockTimeoutMs: number): () => Promise<OpenSnapshot> {
  if (location.dialect === 'postgres') {
    return async () => await readOnlyTransaction(db, async (trx) => {
      await sql`set local idle_in_transaction_session_timeout = ${sql.lit(SNAPSHOT_IDLE_MS)}`.execute(trx)
    })
  }
  if (location.filename === ':memory:') return async () => await readOnlyTransaction(db)
  return async () => {
    const reader = openSqliteReader(location.filename, lockTimeoutMs)
    try {
      const snapshot = await readOnlyTransaction(reader)
      return { db: snapshot.db, close: async () => { await snapshot.close(); await reader.destroy() } }
    } catch (error) {
      await reader.destroy()
      throw error
    }
  }
}

async function readOnlyTransaction (db: Kysely<DatabaseSchema>, prepare?: (trx: Kysely<DatabaseSchema>) => Promise<void>): Promise<OpenSnapshot> {
  const trx = await db.startTransaction().setIsolationLevel('repeatable read').setAccessMode('read only').execute()
  const close = async (): Promise<void> => {
    // The connection goes back either way; a rollback that fails (a connection lost, which ended
    // the transaction already) has nothing to undo, and must not hide the error the reads met.
    await trx.rollback().execute().catch(() => {})
  }
  try {
    await prepare?.(trx)
  } catch (error) {
    await close()
    throw error
  }
  return { db: trx, close }
}

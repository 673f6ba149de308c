import type { KyselyPlugin } from 'kysely'
import type { DatabaseLocation } from './database-url.js'
import { SnapshotEnded } from './exported.js'
import { sql, type Kysely } from './kysely.js'
import type { DatabaseSchema } from './schema.js'
import { openSqliteReader } from './sqlite.js'

/** An open read-only transaction, and how to end it (and free what it holds; a second `close` waits for the first). */
export interface OpenSnapshot {
  db: Kysely<DatabaseSchema>
  close(): Promise<void>
}

/**
 * How long a snapshot may wait between two reads, on a slow reader of the export (a pipe into
 * `less`): longer than the service's transactions may (IDLE_IN_TRANSACTION_MS), not forever, as
 * it holds back PostgreSQL's vacuum, and SQLite's write-ahead log cannot be emptied past it (nor
 * can anything else run on an in-memory database while it lasts). `endWhenIdle` ends it.
 */
export const SNAPSHOT_IDLE_MS = 10 * 60_000

/** How much later than the client PostgreSQL ends an idle snapshot (when the client is gone). */
const SERVER_IDLE_GRACE_MS = 5000

/**
 * Opens read snapshots of the database at `location` (see Transactor.readSnapshot).
 * - PostgreSQL: a REPEATABLE READ, READ ONLY transaction on a connection of the pool.
 * - A SQLite file: a deferred transaction on a read-only connection of its own, opened for it,
 *   so that the service's connection stays free and writers go on (WAL mode); the WAL cannot be
 *   checkpointed past the snapshot, so it grows by what is written until the snapshot ends.
 * - In-memory SQLite, whose one connection is the only way to the data: a deferred transaction
 *   on it, which holds it, and every other statement waits for the snapshot's end.
 * A snapshot idle for `idleMs` ends, and its next read fails with `SnapshotEnded`.
 */
export function snapshotOpener (location: DatabaseLocation, db: Kysely<DatabaseSchema>, lockTimeoutMs: number, idleMs = SNAPSHOT_IDLE_MS): () => Promise<OpenSnapshot> {
  const open = transactionOpener(location, db, lockTimeoutMs, idleMs)
  return async () => endWhenIdle(await open(), idleMs)
}

/** The read-only transaction of each kind of database (see snapshotOpener), as yet without its idle limit. */
function transactionOpener (location: DatabaseLocation, db: Kysely<DatabaseSchema>, lockTimeoutMs: number, idleMs: number): () => Promise<OpenSnapshot> {
  if (location.dialect === 'postgres') {
    return async () => await readOnlyTransaction(db, async (trx) => {
      // The server's own limit, for a client that vanished: a little later than ours.
      await sql`set local idle_in_transaction_session_timeout = ${sql.lit(idleMs + SERVER_IDLE_GRACE_MS)}`.execute(trx)
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

/** Calls `fn` after `ms` unless the function it returns is called first (a test passes its own clock). */
export type Schedule = (fn: () => void, ms: number) => () => void

const unrefTimeout: Schedule = (fn, ms) => {
  const timer = setTimeout(fn, ms).unref()
  return () => { clearTimeout(timer) }
}

/**
 * Closes `snapshot` once no read has begun or ended on it for `idleMs`; a read after that fails
 * with `SnapshotEnded`. Its `close` may be called again: later calls wait for the first.
 */
export function endWhenIdle (snapshot: OpenSnapshot, idleMs: number, schedule: Schedule = unrefTimeout): OpenSnapshot {
  let closing: Promise<void> | undefined
  const close = async (): Promise<void> => {
    cancel()
    await (closing ??= snapshot.close())
  }
  const end = (): void => { close().catch(() => {}) }
  let cancel = schedule(end, idleMs)
  const stillIdle = (): void => {
    cancel()
    if (closing === undefined) cancel = schedule(end, idleMs)
  }
  const plugin: KyselyPlugin = {
    transformQuery: ({ node }) => {
      if (closing !== undefined) throw new SnapshotEnded(`the read snapshot has ended: no read for ${idleMs / 1000} s`)
      stillIdle()
      return node
    },
    transformResult: async ({ result }) => {
      stillIdle()
      return result
    }
  }
  return { db: snapshot.db.withPlugin(plugin), close }
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

import { closeSync, mkdirSync, openSync } from 'node:fs'
import { dirname } from 'node:path'
import BetterSqlite3 from 'better-sqlite3'
import type { Dialect } from 'kysely'
import { Kysely, SqliteAdapter, SqliteIntrospector, SqliteQueryCompiler } from './kysely.js'
import { holdWritesOn, runDirectly } from './prepared.js'
import type { SqliteSynchronous } from './persistence-options.js'
import type { DatabaseSchema } from './schema.js'
import { SAFETY_NET_CHECKPOINT_PAGES, SqliteCheckpointer, WAL_SIZE_LIMIT_BYTES } from './sqlite-checkpointer.js'
import { STATEMENT_CACHE_SIZE } from './sqlite-connection.js'
import { SqliteDriver } from './sqlite-driver.js'
import { sqliteRuntimeProblem } from './sqlite-runtime.js'
import { SqliteThread } from './sqlite-thread.js'

/** By default, a SQLite thread is started again at most once in this long (see SqliteDriver.startThread). */
export const THREAD_RESTART_INTERVAL_MS = 60_000

export interface SqliteOptions {
  synchronous: SqliteSynchronous
  /** How long a statement waits for a lock another process holds before failing as unavailable (0: no limit). */
  lockTimeoutMs: number
  /** Checkpoint the WAL from a worker thread (see SqliteCheckpointer), reporting failures here. */
  checkpointInBackground?: { onError: (error: Error) => void }
  /** Hears that the SQLite thread stopped (see SqliteDriver.startThread); a file database only. */
  onThreadError?: (error: Error) => void
  /** The least time between two starts of a SQLite thread that keeps stopping (THREAD_RESTART_INTERVAL_MS by default). */
  threadRestartIntervalMs: number
}

/**
 * Opens (creating its folder) a SQLite database in WAL mode. `synchronous=NORMAL` keeps every
 * acknowledged write through a process crash; `FULL` also through a power loss.
 *
 * What it creates only the owner can read, as the users' emails and the keys' hashes are in it:
 * the folders 0700, the file 0600 (SQLite gives its `-wal` and `-shm` files the file's mode). An
 * existing folder or file keeps the mode it has.
 */
export async function openSqlite (filename: string, options: SqliteOptions): Promise<Kysely<DatabaseSchema>> {
  const runtimeProblem = sqliteRuntimeProblem(process.versions.node)
  if (runtimeProblem !== undefined) throw new Error(runtimeProblem)
  const inMemory = filename === ':memory:'
  if (!inMemory) {
    mkdirSync(dirname(filename), { recursive: true, mode: 0o700 })
    closeSync(openSync(filename, 'a', 0o600))
  }
  const background = inMemory ? undefined : options.checkpointInBackground
  const pragmas = [
    `synchronous = ${options.synchronous}`,
    'foreign_keys = ON',
    // Waiting for another connection's lock is the driver's job (see SqliteConnection.executeQuery):
    // SQLite's busy timeout would wait inside the synchronous call, with the event loop stalled.
    'busy_timeout = 0',
    `journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`,
    ...background === undefined ? [] : [`wal_autocheckpoint = ${SAFETY_NET_CHECKPOINT_PAGES}`]
  ]
  const db = new BetterSqlite3(filename)
  const driver = new SqliteDriver(db, options.lockTimeoutMs)
  try {
    db.pragma('journal_mode = WAL')
    for (const pragma of pragmas) db.pragma(pragma)
    // An in-memory database exists on its one connection only.
    if (!inMemory) {
      await driver.startThread(async (onStop) => await SqliteThread.open(filename, pragmas, STATEMENT_CACHE_SIZE, onStop), options.onThreadError ?? (() => {}), options.threadRestartIntervalMs)
    }
  } catch (error) {
    await driver.destroy()
    throw error
  }
  if (background !== undefined) driver.checkpointInBackground(new SqliteCheckpointer(filename, background.onError))
  const kysely = kyselyOn(driver)
  runDirectly(kysely, driver.runNow.bind(driver))
  holdWritesOn(kysely, { available: () => driver.canHold(), commit: async (writes) => await driver.commitHeld(writes) })
  return kysely
}

/**
 * A connection of its own to the file, that can only read (no thread, no pragmas: it writes
 * nothing), for a read snapshot that must not hold the service's connection (see
 * Transactor.readSnapshot). Its transactions begin deferred, taking no lock. A read in WAL mode
 * meets a lock only while another connection rebuilds the WAL's index (a moment, and rare);
 * inside the snapshot's transaction the driver cannot try again, so SQLite's own busy timeout
 * waits for it, up to the lock timeout.
 */
export function openSqliteReader (filename: string, lockTimeoutMs: number): Kysely<DatabaseSchema> {
  // 0 is no limit here, as for the service's statements; better-sqlite3's largest is 2^31 - 1 ms.
  const db = new BetterSqlite3(filename, { readonly: true, fileMustExist: true, timeout: lockTimeoutMs === 0 ? 2 ** 31 - 1 : lockTimeoutMs })
  return kyselyOn(new SqliteDriver(db, lockTimeoutMs))
}

function kyselyOn (driver: SqliteDriver): Kysely<DatabaseSchema> {
  const dialect: Dialect = {
    createAdapter: () => new SqliteAdapter(),
    createDriver: () => driver,
    createQueryCompiler: () => new SqliteQueryCompiler(),
    createIntrospector: (kysely) => new SqliteIntrospector(kysely)
  }
  return new Kysely<DatabaseSchema>({ dialect })
}

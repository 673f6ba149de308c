import type BetterSqlite3 from 'better-sqlite3'
import type { DatabaseConnection, Driver, QueryResult, TransactionSettings } from 'kysely'
import { isSqliteBusy } from './database-errors.js'
import { CompiledQuery } from './kysely.js'
import type { HeldWrite } from './prepared.js'
import { SqliteConnection } from './sqlite-connection.js'
import type { SqliteCheckpointer } from './sqlite-checkpointer.js'
import type { SqliteThread } from './sqlite-thread.js'

/** Pauses between attempts at a lock another process holds, in ms; the last one repeats. */
const LOCK_RETRY_DELAYS = [0, 1, 2, 5, 10, 20, 50, 100]

async function pause (ms: number): Promise<void> {
  await new Promise<void>((resolve) => ms === 0 ? setImmediate(resolve) : setTimeout(resolve, ms))
}

/**
 * Kysely's queries (transactions, migrations, anything not prepared) run on one connection on
 * the event loop's thread, so they take turns. Kysely's own driver wakes every waiter at each
 * release (all but one go back to sleep): with 50 requests in flight that cost more than the
 * queries. Here waiters queue, and a release hands the connection to the next one only.
 * A file database also has a second connection on a thread of its own (see SqliteThread) for
 * the prepared statements run outside transactions: the hot path of every read and update.
 */
export class SqliteDriver implements Driver {
  readonly #connection: SqliteConnection
  readonly #db: BetterSqlite3.Database
  readonly #waiting: Array<() => void> = []
  #busy = false
  #thread: SqliteThread | undefined
  /** Set while a thread that stopped is being replaced. */
  #replacing: Promise<void> | undefined
  /** Set while a thread that stopped waits to be started again (see startThread). */
  #restartTimer: NodeJS.Timeout | undefined
  #destroyed = false
  #checkpointer: SqliteCheckpointer | undefined

  constructor (db: BetterSqlite3.Database, lockTimeoutMs: number) {
    this.#db = db
    this.#connection = new SqliteConnection(db, lockTimeoutMs, async (attempt) => await this.#waitForLock(attempt))
  }

  async init (): Promise<void> {}

  /**
   * Gives the driver its SQLite thread, opened by `open` with the stop callback it is handed.
   * A thread that stops is reported to `onError` and replaced the same way; the statements
   * sent meanwhile wait for the new one (milliseconds, once). One that stops before answering
   * anything would likely do so again, and so would one that stops within `restartIntervalMs` of
   * the last restart: each is started again only once that long has passed since (the last
   * restart, or its stop), and so is one whose replacement failed to open. Until then the event
   * loop's connection runs every statement.
   */
  async startThread (open: (onStop: (error: Error, answered: number) => void) => Promise<SqliteThread>, onError: (error: Error) => void, restartIntervalMs: number): Promise<void> {
    const seconds = restartIntervalMs / 1000
    const later = `a new one is started within ${seconds} s: statements run on the event loop's connection until then`
    let lastRestart = -Infinity
    const restart = (): void => {
      lastRestart = performance.now()
      this.#replacing = open(onStop).then(async (thread) => {
        if (this.#destroyed) await thread.close()
        else this.#thread = thread
      }, (cause: unknown) => {
        onError(new Error(`the SQLite thread could not be started again (${cause instanceof Error ? cause.message : String(cause)}); ${later}`, { cause }))
        restartAt(performance.now() + restartIntervalMs)
      }).finally(() => { this.#replacing = undefined })
    }
    const restartAt = (when: number): void => {
      this.#restartTimer = setTimeout(() => {
        this.#restartTimer = undefined
        if (!this.#destroyed) restart()
      }, Math.max(0, when - performance.now()))
      // Never what keeps the process alive.
      this.#restartTimer.unref()
    }
    const onStop = (error: Error, answered: number): void => {
      if (this.#destroyed) {
        onError(error)
        return
      }
      if (answered === 0) {
        onError(new Error(`${error.message}, before it answered any statement; ${later}`, { cause: error }))
        restartAt(performance.now() + restartIntervalMs)
      } else if (performance.now() - lastRestart < restartIntervalMs) {
        onError(new Error(`${error.message}, within ${seconds} s of the last restart; ${later}`, { cause: error }))
        restartAt(lastRestart + restartIntervalMs)
      } else {
        onError(new Error(`${error.message}; a new one is started`, { cause: error }))
        restart()
      }
    }
    this.#thread = await open(onStop)
  }

  /** Checkpoints the WAL from a worker thread from now on (see SqliteCheckpointer). */
  checkpointInBackground (checkpointer: SqliteCheckpointer): void {
    this.#checkpointer = checkpointer
  }

  /**
   * Runs one statement outside any transaction without Kysely's acquire-run-release chain of
   * promises: on the SQLite thread when there is one; else at once, when no one holds the
   * connection (better-sqlite3 is synchronous, so nothing can interleave). Resolves to
   * undefined when it cannot (the connection is held, or another connection holds the lock the
   * statement needs), and the caller queues through Kysely, which waits for the lock.
   */
  async runNow<R> (sql: string, parameters: readonly unknown[]): Promise<QueryResult<R> | undefined> {
    try {
      if (this.#replacing !== undefined) await this.#replacing
      if (this.#thread?.open === true) return await this.#thread.run<R>(sql, parameters)
      if (this.#busy || !this.#db.open) return undefined
      return this.#connection.run(sql, parameters)
    } catch (error) {
      if (isSqliteBusy(error)) return undefined
      throw error
    }
  }

  /** Whether held writes can go to the SQLite thread now (see commitHeld). */
  canHold (): boolean {
    return this.#thread?.open === true && this.#replacing === undefined
  }

  /**
   * Makes held writes in one transaction on the SQLite thread (see SqliteThread.transaction):
   * back to back there, where a transaction on the event loop's connection holds the write lock
   * across turns of the event loop and meets the thread's writes. False, with nothing written,
   * when there is no thread to take them.
   */
  async commitHeld (writes: readonly HeldWrite[]): Promise<boolean> {
    if (!this.canHold()) return false
    return await (this.#thread as SqliteThread).transaction(writes)
  }

  /**
   * The holder of the connection waits for another process's lock: the connection goes to the
   * requests queued behind it meanwhile (reads need no lock in WAL mode), and comes back after
   * the pause. SQLite's own busy timeout would sleep with the whole event loop stalled.
   */
  async #waitForLock (attempt: number): Promise<void> {
    await this.releaseConnection()
    await pause(LOCK_RETRY_DELAYS[Math.min(attempt, LOCK_RETRY_DELAYS.length - 1)] as number)
    await this.acquireConnection()
  }

  async acquireConnection (): Promise<DatabaseConnection> {
    if (this.#busy) await new Promise<void>((resolve) => this.#waiting.push(resolve))
    this.#busy = true
    return this.#connection
  }

  async releaseConnection (): Promise<void> {
    const next = this.#waiting.shift()
    if (next === undefined) this.#busy = false
    else next()
  }

  async beginTransaction (connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    // The write lock up front: a deferred transaction that reads first can find it taken at its
    // first write, too late to wait for it. One that only reads needs no lock: its first read
    // fixes what it sees (WAL mode), and writers go on meanwhile.
    await connection.executeQuery(CompiledQuery.raw(settings.accessMode === 'read only' ? 'begin' : 'begin immediate'))
  }

  async commitTransaction (connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('commit'))
  }

  async rollbackTransaction (connection: DatabaseConnection): Promise<void> {
    // A failed statement can have ended the transaction already (SQLite rolls back on some
    // errors): then there is nothing to undo, and that statement's error is the one to report.
    if (this.#db.inTransaction) await connection.executeQuery(CompiledQuery.raw('rollback'))
  }

  async destroy (): Promise<void> {
    this.#destroyed = true
    clearTimeout(this.#restartTimer)
    await this.#checkpointer?.stop()
    await this.#replacing
    await this.#thread?.close()
    this.#db.close()
  }
}

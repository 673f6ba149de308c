import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'
import type { QueryResult } from 'kysely'
import { SQLITE_THREAD_STOPPED } from './database-errors.js'
import { EVAL_WORKER } from './sqlite-checkpointer.js'

// A CommonJS script, so it runs the same from the compiled package and from the TypeScript tests.
// It answers every message, in the order received, with the statement's result or its error.
const WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads')
const Database = require(workerData.betterSqlite3)
const failure = (error) => ({ name: String(error && error.name), message: String(error && error.message), code: error && error.code })
let db
try {
  db = new Database(workerData.filename)
  for (const pragma of workerData.pragmas) db.pragma(pragma)
  parentPort.postMessage({})
} catch (error) {
  if (db !== undefined) db.close()
  parentPort.postMessage({ error: failure(error) })
  parentPort.close()
}
const statements = new Map()
parentPort.on('message', ({ id, sql, parameters, close }) => {
  if (close) {
    db.close()
    parentPort.postMessage({ id, result: undefined })
    parentPort.close()
    return
  }
  try {
    let statement = statements.get(sql)
    if (statement === undefined) {
      if (statements.size >= workerData.cacheSize) statements.clear()
      statement = db.prepare(sql)
      statements.set(sql, statement)
    }
    let result
    if (statement.reader) result = { rows: statement.all(parameters) }
    else {
      const { changes, lastInsertRowid } = statement.run(parameters)
      result = { numAffectedRows: BigInt(changes), insertId: BigInt(lastInsertRowid), rows: [] }
    }
    parentPort.postMessage({ id, result })
  } catch (error) {
    parentPort.postMessage({ id, error: failure(error) })
  }
})
`

interface Failure { name: string, message: string, code?: unknown }
type Reply = { id: number } & ({ result: QueryResult<unknown> } | { error: Failure })
interface Pending { resolve: (result: QueryResult<any>) => void, reject: (error: Error) => void }

/** An error like the one better-sqlite3 threw in the thread: same name, message and `code`. */
function rebuilt ({ name, message, code }: Failure): Error {
  const error = new Error(message)
  error.name = name
  return code === undefined ? error : Object.assign(error, { code })
}

/**
 * A second better-sqlite3 connection to a database file, on a thread of its own, for statements
 * that run outside transactions. They run there one at a time, in the order sent, while the
 * event loop goes on with other requests. SQLite's work (B-tree walks, file locks, WAL writes)
 * then runs beside the JavaScript instead of taking turns with it on one thread, and each keeps
 * its working set in its own core's caches: on the 2-core benchmark machine a PUT costs less
 * CPU in all, not only less of the event loop's. Transactions stay on the event loop's
 * connection: each of their statements waits for the one before, and a round trip to a thread
 * for each would hold SQLite's write lock, and every writer behind it, several times as long.
 */
export class SqliteThread {
  readonly #worker: Worker
  readonly #onStop: (error: Error, answered: number) => void
  readonly #pending = new Map<number, Pending>()
  #next = 0
  #answered = 0
  #stopped: Error | undefined

  private constructor (worker: Worker, onStop: (error: Error, answered: number) => void) {
    this.#worker = worker
    this.#onStop = onStop
    worker.on('message', (reply: Reply) => this.#settle(reply))
    worker.on('error', (error) => this.#stop(error))
    worker.on('exit', (code) => this.#stop(new Error(`the SQLite thread exited with code ${code}`)))
    // Like a connection on the event loop's own thread, it keeps the process alive only while a
    // statement is under way (see run).
    worker.unref()
  }

  /**
   * Opens `filename` on a new thread and applies the pragmas; rejects as better-sqlite3 would.
   * `onStop` hears of a stop before `close` (with how many statements the thread had answered):
   * the statements under way have failed, and the thread takes no more.
   */
  static async open (filename: string, pragmas: string[], cacheSize: number, onStop: (error: Error, answered: number) => void): Promise<SqliteThread> {
    const worker = new Worker(WORKER_SOURCE, {
      ...EVAL_WORKER,
      workerData: { filename, pragmas, cacheSize, betterSqlite3: createRequire(import.meta.url).resolve('better-sqlite3') }
    })
    let settle!: () => void
    const first = await new Promise<{ error?: Failure }>((resolve, reject) => {
      const exited = (code: number): void => reject(new Error(`the SQLite thread exited with code ${code} before it opened the database`))
      worker.once('message', resolve)
      worker.once('error', reject)
      worker.once('exit', exited)
      settle = () => {
        worker.off('error', reject)
        worker.off('exit', exited)
      }
    }).finally(() => settle())
    if (first.error !== undefined) {
      await worker.terminate()
      throw rebuilt(first.error)
    }
    return new SqliteThread(worker, onStop)
  }

  get open (): boolean {
    return this.#stopped === undefined
  }

  /** Runs one statement (prepared once per SQL text, as better-sqlite3 caches nothing itself). */
  async run<R> (sql: string, parameters: readonly unknown[]): Promise<QueryResult<R>> {
    if (this.#stopped !== undefined) throw this.#stopped
    return await this.#send({ sql, parameters })
  }

  /** Closes the connection after the statements already sent, and ends the thread. */
  async close (): Promise<void> {
    if (this.#stopped !== undefined) return
    const closed = this.#send({ close: true })
    this.#stopped = new TypeError('The database connection is not open')
    await closed
  }

  async #send<R> (message: { sql: string, parameters: readonly unknown[] } | { close: true }): Promise<QueryResult<R>> {
    const id = this.#next++
    return await new Promise<QueryResult<R>>((resolve, reject) => {
      // Throws (and so rejects) for a parameter that cannot cross threads, before anything waits.
      this.#worker.postMessage({ id, ...message })
      if (this.#pending.size === 0) this.#worker.ref()
      this.#pending.set(id, { resolve, reject })
    })
  }

  #settle (reply: Reply): void {
    const pending = this.#pending.get(reply.id)
    if (pending === undefined) return
    this.#pending.delete(reply.id)
    if (this.#pending.size === 0) this.#worker.unref()
    this.#answered++
    if ('error' in reply) pending.reject(rebuilt(reply.error))
    else pending.resolve(reply.result)
  }

  #stop (cause: Error): void {
    // After close (or a first stop: an error is followed by an exit) this is expected. Before
    // it, the statements under way fail, as the database being unavailable, and the owner hears.
    const unexpected = this.#stopped === undefined
    this.#stopped ??= Object.assign(new Error(`the SQLite thread stopped (${cause.message})`, { cause }), { code: SQLITE_THREAD_STOPPED })
    for (const { reject } of this.#pending.values()) reject(this.#stopped)
    this.#pending.clear()
    if (unexpected) this.#onStop(this.#stopped, this.#answered)
  }
}

import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'
import type { QueryResult } from 'kysely'
import { SQLITE_THREAD_STOPPED } from './database-errors.js'
import type { HeldWrite } from './prepared.js'
import { EVAL_WORKER } from './sqlite-checkpointer.js'

/** The kinds of the thread's answers: an answer's second element, after the message's id. */
const ROWS = 0
const RUN = 1
const FAILED = 2
const CLOSED = 3

/** The statement numbers that are not statements: close, and a transaction of several. */
const CLOSE = -1
const TRANSACTION = -2

// A CommonJS script, so it runs the same from the compiled package and from the TypeScript tests.
// It answers every message, in the order received, with the statement's result or its error.
// Messages and answers are arrays, the least for the structured clone to copy: a statement is
// known by a number, its SQL sent with the first use only, and rows come as arrays of values,
// with the column names in the first answer of each statement. A transaction comes as one
// message: its statements, each as [number, parameters, SQL?], made in order between BEGIN
// IMMEDIATE and COMMIT, or rolled back at the first that changes no row (answered as 0 changes).
const WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads')
const Database = require(workerData.betterSqlite3)
const failure = (error) => ({ name: String(error && error.name), message: String(error && error.message), code: error && error.code })
let db, begin, commit, rollback
try {
  // Never a database of its own: a file removed under the event loop's connection stays removed.
  db = new Database(workerData.filename, { fileMustExist: true })
  for (const pragma of workerData.pragmas) db.pragma(pragma)
  begin = db.prepare('begin immediate')
  commit = db.prepare('commit')
  rollback = db.prepare('rollback')
  parentPort.postMessage({})
} catch (error) {
  if (db !== undefined) db.close()
  parentPort.postMessage({ error: failure(error) })
  parentPort.close()
}
// By number: the SQL, the statement once prepared, and whether its column names were sent.
// Number 0 comes with its SQL first, and again only after the event loop has forgotten them all.
let sqls = []
let statements = []
let namesSent = []
const learn = (number, sql) => {
  if (sql === undefined) return
  if (number === 0) {
    sqls = []
    statements = []
    namesSent = []
  }
  sqls[number] = sql
}
const prepared = (number) => {
  let statement = statements[number]
  if (statement === undefined) {
    statement = db.prepare(sqls[number])
    if (statement.reader) statement.raw(true)
    statements[number] = statement
  }
  return statement
}
const transaction = (id, writes) => {
  // Every SQL first: one not reached below must still be known by its number next time.
  for (const [number, , sql] of writes) learn(number, sql)
  try {
    begin.run()
    let changed = 1
    for (const [number, parameters] of writes) {
      const statement = prepared(number)
      if ((statement.reader ? statement.all(parameters).length : statement.run(parameters).changes) === 0) {
        changed = 0
        break
      }
    }
    if (changed === 1) commit.run()
    else rollback.run()
    parentPort.postMessage([id, ${RUN}, changed, 0])
  } catch (error) {
    if (db.inTransaction) rollback.run()
    parentPort.postMessage([id, ${FAILED}, failure(error)])
  }
}
parentPort.on('message', ([id, number, parameters, sql]) => {
  if (number === ${CLOSE}) {
    db.close()
    parentPort.postMessage([id, ${CLOSED}])
    parentPort.close()
    return
  }
  if (number === ${TRANSACTION}) {
    transaction(id, parameters)
    return
  }
  learn(number, sql)
  try {
    const statement = prepared(number)
    if (!statement.reader) {
      const { changes, lastInsertRowid } = statement.run(parameters)
      parentPort.postMessage([id, ${RUN}, changes, lastInsertRowid])
    } else if (namesSent[number]) {
      parentPort.postMessage([id, ${ROWS}, statement.all(parameters)])
    } else {
      const rows = statement.all(parameters)
      namesSent[number] = true
      parentPort.postMessage([id, ${ROWS}, rows, statement.columns().map((column) => column.name)])
    }
  } catch (error) {
    parentPort.postMessage([id, ${FAILED}, failure(error)])
  }
})
`

interface Failure { name: string, message: string, code?: unknown }
type Reply = [id: number, kind: typeof ROWS, rows: unknown[][], columns?: string[]]
  | [id: number, kind: typeof RUN, changes: number, lastInsertRowid: number | bigint]
  | [id: number, kind: typeof FAILED, failure: Failure]
  | [id: number, kind: typeof CLOSED]
/** A statement's number on the thread, and its column names once an answer has brought them. */
interface Registered { number: number, columns?: string[] }
interface Pending { statement: Registered | undefined, resolve: (result: QueryResult<any>) => void, reject: (error: Error) => void }

/** An error like the one better-sqlite3 threw in the thread: same name, message and `code`. */
function rebuilt ({ name, message, code }: Failure): Error {
  const error = new Error(message)
  error.name = name
  return code === undefined ? error : Object.assign(error, { code })
}

/** Rows as better-sqlite3 gives them on the event loop's connection: objects by column name. */
function asObjects (rows: unknown[][], columns: string[]): Array<Record<string, unknown>> {
  return rows.map((values) => {
    const row: Record<string, unknown> = {}
    for (let i = 0; i < columns.length; i++) row[columns[i] as string] = values[i]
    return row
  })
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
 * Only a transaction whose writes are all known before it begins comes here, as one message
 * (see `transaction`).
 */
export class SqliteThread {
  readonly #worker: Worker
  readonly #cacheSize: number
  readonly #onStop: (error: Error, answered: number) => void
  readonly #pending = new Map<number, Pending>()
  readonly #statements = new Map<string, Registered>()
  #next = 0
  #answered = 0
  #stopped: Error | undefined

  private constructor (worker: Worker, cacheSize: number, onStop: (error: Error, answered: number) => void) {
    this.#worker = worker
    this.#cacheSize = cacheSize
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
   * the statements under way have failed, and the thread takes no more. At most `cacheSize`
   * statements stay prepared there.
   */
  static async open (filename: string, pragmas: string[], cacheSize: number, onStop: (error: Error, answered: number) => void): Promise<SqliteThread> {
    const worker = new Worker(WORKER_SOURCE, {
      ...EVAL_WORKER,
      workerData: { filename, pragmas, betterSqlite3: createRequire(import.meta.url).resolve('better-sqlite3') }
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
    return new SqliteThread(worker, cacheSize, onStop)
  }

  get open (): boolean {
    return this.#stopped === undefined
  }

  /** Runs one statement (prepared once per SQL text, as better-sqlite3 caches nothing itself). */
  async run<R> (sql: string, parameters: readonly unknown[]): Promise<QueryResult<R>> {
    if (this.#stopped !== undefined) throw this.#stopped
    const known = this.#statements.get(sql)
    if (known !== undefined) return await this.#send(known, known.number, parameters)
    // A full cache starts again from number 0, which tells the thread to forget the others too.
    if (this.#statements.size >= this.#cacheSize) this.#statements.clear()
    const statement: Registered = { number: this.#statements.size }
    const answer = this.#send<R>(statement, statement.number, parameters, sql)
    // Only once sent: a message that could not be (see #send) took no number.
    this.#statements.set(sql, statement)
    return await answer
  }

  /**
   * Makes `writes` in order in one transaction on the thread (BEGIN IMMEDIATE): true once
   * committed; false, with nothing written, when one changed no row. Rejects, with nothing
   * written, when one fails, or when BEGIN finds another connection writing (SQLITE_BUSY).
   */
  async transaction (writes: readonly HeldWrite[]): Promise<boolean> {
    if (this.#stopped !== undefined) throw this.#stopped
    // Numbered as `run` numbers them, from 0 again if the new ones would overflow the cache.
    const unknown = new Set(writes.map(([sql]) => sql).filter((sql) => !this.#statements.has(sql)))
    if (this.#statements.size + unknown.size > this.#cacheSize) this.#statements.clear()
    const fresh = new Map<string, Registered>()
    const entries = writes.map(([sql, parameters]) => {
      // A statement's SQL goes with its first entry only.
      const statement = this.#statements.get(sql) ?? fresh.get(sql)
      if (statement !== undefined) return [statement.number, parameters]
      const added = { number: this.#statements.size + fresh.size }
      fresh.set(sql, added)
      return [added.number, parameters, sql]
    })
    const answer = this.#send(undefined, TRANSACTION, entries)
    // Only once sent, as in `run`.
    for (const [sql, statement] of fresh) this.#statements.set(sql, statement)
    return (await answer).numAffectedRows === 1n
  }

  /** Closes the connection after the statements already sent, and ends the thread. */
  async close (): Promise<void> {
    if (this.#stopped !== undefined) return
    const closed = this.#send(undefined, CLOSE)
    this.#stopped = new TypeError('The database connection is not open')
    await closed
  }

  /** Sends a statement's number (or CLOSE, or TRANSACTION) and what it needs; throws at once for a parameter that cannot cross threads. */
  #send<R> (statement: Registered | undefined, number: number, parameters?: readonly unknown[], sql?: string): Promise<QueryResult<R>> {
    const id = this.#next
    this.#worker.postMessage(sql === undefined ? [id, number, parameters] : [id, number, parameters, sql])
    this.#next++
    if (this.#pending.size === 0) this.#worker.ref()
    return new Promise<QueryResult<R>>((resolve, reject) => this.#pending.set(id, { statement, resolve, reject }))
  }

  #settle (reply: Reply): void {
    const pending = this.#pending.get(reply[0])
    if (pending === undefined) return
    this.#pending.delete(reply[0])
    if (this.#pending.size === 0) this.#worker.unref()
    this.#answered++
    switch (reply[1]) {
      case ROWS: {
        const statement = pending.statement as Registered
        if (reply[3] !== undefined) statement.columns = reply[3]
        pending.resolve({ rows: asObjects(reply[2], statement.columns as string[]) })
        break
      }
      case RUN:
        pending.resolve({ numAffectedRows: BigInt(reply[2]), insertId: BigInt(reply[3]), rows: [] })
        break
      case FAILED:
        pending.reject(rebuilt(reply[2]))
        break
      default:
        pending.resolve({ rows: [] })
    }
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

import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import BetterSqlite3 from 'better-sqlite3'
import {
  CompiledQuery, Kysely, SelectQueryNode, SqliteAdapter, SqliteIntrospector, SqliteQueryCompiler,
  type DatabaseConnection, type Dialect, type Driver, type QueryResult
} from 'kysely'
import { runDirectly } from './prepared.js'
import type { DatabaseSchema } from './schema.js'
import { SAFETY_NET_CHECKPOINT_PAGES, SqliteCheckpointer } from './sqlite-checkpointer.js'

export type SqliteSynchronous = 'NORMAL' | 'FULL'

const STATEMENT_CACHE_SIZE = 256

/** better-sqlite3 behind Kysely, reusing prepared statements (Kysely's own driver prepares every query afresh). */
class SqliteConnection implements DatabaseConnection {
  readonly #db: BetterSqlite3.Database
  readonly #statements = new Map<string, BetterSqlite3.Statement>()

  constructor (db: BetterSqlite3.Database) {
    this.#db = db
  }

  #prepare (sql: string): BetterSqlite3.Statement {
    let statement = this.#statements.get(sql)
    if (statement === undefined) {
      if (this.#statements.size >= STATEMENT_CACHE_SIZE) this.#statements.clear()
      statement = this.#db.prepare(sql)
      this.#statements.set(sql, statement)
    }
    return statement
  }

  run<R> (sql: string, parameters: readonly unknown[]): QueryResult<R> {
    const statement = this.#prepare(sql)
    if (statement.reader) return { rows: statement.all(parameters) as R[] }
    const { changes, lastInsertRowid } = statement.run(parameters)
    return { numAffectedRows: BigInt(changes), insertId: BigInt(lastInsertRowid), rows: [] }
  }

  async executeQuery<R> ({ sql, parameters }: CompiledQuery): Promise<QueryResult<R>> {
    return this.run(sql, parameters)
  }

  async * streamQuery<R> ({ sql, parameters, query }: CompiledQuery): AsyncIterableIterator<QueryResult<R>> {
    if (!SelectQueryNode.is(query)) throw new Error('SQLite streams only select queries')
    for (const row of this.#prepare(sql).iterate(parameters)) yield { rows: [row as R] }
  }
}

/**
 * SQLite has one connection, so queries take turns. Kysely's own driver wakes every waiter at
 * each release (all but one go back to sleep): with 50 requests in flight that cost more than
 * the queries. Here waiters queue, and a release hands the connection to the next one only.
 */
class SqliteDriver implements Driver {
  readonly #connection: SqliteConnection
  readonly #db: BetterSqlite3.Database
  readonly #checkpointer: SqliteCheckpointer | undefined
  readonly #waiting: Array<() => void> = []
  #busy = false

  constructor (db: BetterSqlite3.Database, checkpointer: SqliteCheckpointer | undefined) {
    this.#db = db
    this.#checkpointer = checkpointer
    this.#connection = new SqliteConnection(db)
  }

  async init (): Promise<void> {}

  /**
   * Runs one statement at once when no one holds the connection (better-sqlite3 is synchronous,
   * so nothing can interleave), without Kysely's acquire-run-release chain of promises; else
   * undefined, and the caller queues through Kysely.
   */
  runNow<R> (sql: string, parameters: readonly unknown[]): QueryResult<R> | undefined {
    return this.#busy || !this.#db.open ? undefined : this.#connection.run(sql, parameters)
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

  async beginTransaction (connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin'))
  }

  async commitTransaction (connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('commit'))
  }

  async rollbackTransaction (connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('rollback'))
  }

  async destroy (): Promise<void> {
    await this.#checkpointer?.stop()
    this.#db.close()
  }
}

export interface SqliteOptions {
  synchronous: SqliteSynchronous
  /** Checkpoint the WAL from a worker thread (see SqliteCheckpointer), reporting failures here. */
  checkpointInBackground?: { onError: (error: Error) => void }
}

/**
 * Opens (creating its folder) a SQLite database in WAL mode. `synchronous=NORMAL` keeps every
 * acknowledged write through a process crash; `FULL` also through a power loss.
 */
export function openSqlite (filename: string, options: SqliteOptions): Kysely<DatabaseSchema> {
  if (filename !== ':memory:') mkdirSync(dirname(filename), { recursive: true })
  const db = new BetterSqlite3(filename)
  db.pragma('journal_mode = WAL')
  db.pragma(`synchronous = ${options.synchronous}`)
  db.pragma('foreign_keys = ON')
  // Other processes on the same file wait for the write lock instead of failing at once.
  db.pragma('busy_timeout = 5000')
  let checkpointer: SqliteCheckpointer | undefined
  if (options.checkpointInBackground !== undefined && filename !== ':memory:') {
    db.pragma(`wal_autocheckpoint = ${SAFETY_NET_CHECKPOINT_PAGES}`)
    checkpointer = new SqliteCheckpointer(filename, options.checkpointInBackground.onError)
  }
  const driver = new SqliteDriver(db, checkpointer)
  const dialect: Dialect = {
    createAdapter: () => new SqliteAdapter(),
    createDriver: () => driver,
    createQueryCompiler: () => new SqliteQueryCompiler(),
    createIntrospector: (kysely) => new SqliteIntrospector(kysely)
  }
  const kysely = new Kysely<DatabaseSchema>({ dialect })
  runDirectly(kysely, (sql, parameters) => driver.runNow(sql, parameters))
  return kysely
}

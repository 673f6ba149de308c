import type BetterSqlite3 from 'better-sqlite3'
import type { DatabaseConnection, QueryResult } from 'kysely'
import { isSqliteBusy, SQLITE_LOCK_TIMEOUT } from './database-errors.js'
import { type CompiledQuery, SelectQueryNode } from './kysely.js'

/** How many prepared statements a connection keeps (the SQLite thread's too). */
export const STATEMENT_CACHE_SIZE = 256

/** better-sqlite3 behind Kysely, reusing prepared statements (Kysely's own driver prepares every query afresh). */
export class SqliteConnection implements DatabaseConnection {
  readonly #db: BetterSqlite3.Database
  readonly #statements = new Map<string, BetterSqlite3.Statement>()
  readonly #waitForLock: (attempt: number) => Promise<void>
  readonly #lockTimeoutMs: number

  constructor (db: BetterSqlite3.Database, lockTimeoutMs: number, waitForLock: (attempt: number) => Promise<void>) {
    this.#db = db
    this.#lockTimeoutMs = lockTimeoutMs
    this.#waitForLock = waitForLock
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

  /**
   * A statement that finds another process holding the lock it needs is tried again after a
   * pause, for up to the lock timeout, then fails as SQLITE_LOCK_TIMEOUT (unavailable). Only a
   * statement begun outside a transaction (on its own, or the `BEGIN` itself) can be run again
   * as is; inside one, the error goes to the transaction's owner, which runs it all again.
   */
  async executeQuery<R> ({ sql, parameters }: CompiledQuery): Promise<QueryResult<R>> {
    const started = performance.now()
    for (let attempt = 0; ; attempt++) {
      const alone = !this.#db.inTransaction
      try {
        return this.run(sql, parameters)
      } catch (error) {
        if (!alone || !isSqliteBusy(error)) throw error
        if (this.#lockTimeoutMs > 0 && performance.now() - started >= this.#lockTimeoutMs) {
          throw Object.assign(new Error(`database is locked: gave up after ${this.#lockTimeoutMs} ms`), { code: SQLITE_LOCK_TIMEOUT, cause: error })
        }
        await this.#waitForLock(attempt)
      }
    }
  }

  async * streamQuery<R> ({ sql, parameters, query }: CompiledQuery): AsyncIterableIterator<QueryResult<R>> {
    if (!SelectQueryNode.is(query)) throw new Error('SQLite streams only select queries')
    for (const row of this.#prepare(sql).iterate(parameters)) yield { rows: [row as R] }
  }
}

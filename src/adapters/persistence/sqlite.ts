import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import BetterSqlite3 from 'better-sqlite3'
import { Kysely, SqliteDialect, type SqliteDatabase, type SqliteStatement } from 'kysely'
import type { DatabaseSchema } from './schema.js'

export type SqliteSynchronous = 'NORMAL' | 'FULL'

const STATEMENT_CACHE_SIZE = 256

/**
 * Kysely prepares every statement afresh on better-sqlite3; a prepared statement is reusable,
 * and Kysely runs one query at a time on its single connection, so cache them by SQL text.
 */
function withStatementCache (db: BetterSqlite3.Database): SqliteDatabase {
  const cache = new Map<string, SqliteStatement>()
  return {
    close: () => { cache.clear(); db.close() },
    prepare (sql: string) {
      let statement = cache.get(sql)
      if (statement === undefined) {
        if (cache.size >= STATEMENT_CACHE_SIZE) cache.clear()
        statement = db.prepare(sql) as unknown as SqliteStatement
        cache.set(sql, statement)
      }
      return statement
    }
  }
}

/**
 * Opens (creating its folder) a SQLite database in WAL mode. `synchronous=NORMAL` keeps every
 * acknowledged write through a process crash; `FULL` also through a power loss.
 */
export function openSqlite (filename: string, synchronous: SqliteSynchronous): Kysely<DatabaseSchema> {
  if (filename !== ':memory:') mkdirSync(dirname(filename), { recursive: true })
  const db = new BetterSqlite3(filename)
  db.pragma('journal_mode = WAL')
  db.pragma(`synchronous = ${synchronous}`)
  db.pragma('foreign_keys = ON')
  // Other processes on the same file wait for the write lock instead of failing at once.
  db.pragma('busy_timeout = 5000')
  return new Kysely<DatabaseSchema>({ dialect: new SqliteDialect({ database: withStatementCache(db) }) })
}

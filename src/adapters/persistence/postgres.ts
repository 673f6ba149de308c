import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import type { DatabaseSchema } from './schema.js'

export interface PostgresOptions {
  poolMax: number
  /** Told about errors of idle clients (a restarted server, say); the pool replaces them. */
  onPoolError: (error: Error) => void
}

export function openPostgres (connectionString: string, options: PostgresOptions): { db: Kysely<DatabaseSchema>, pool: pg.Pool } {
  const pool = new pg.Pool({
    connectionString,
    max: options.poolMax,
    // Fail fast while the database is down, so callers get a 503 instead of waiting forever.
    connectionTimeoutMillis: 5000
  })
  // Without a listener an idle client's error would crash the process.
  pool.on('error', options.onPoolError)
  return { db: new Kysely<DatabaseSchema>({ dialect: new PostgresDialect({ pool }) }), pool }
}

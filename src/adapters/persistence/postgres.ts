import { hash } from 'node:crypto'
import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import { HOT_STATEMENTS } from './prepared.js'
import type { DatabaseSchema } from './schema.js'

const statementNames = new Map<string, string>()

/**
 * Runs the hot path's queries as named statements: each connection has the server parse and
 * plan them once, then only binds parameters. Kysely sends every query as unnamed, re-parsed
 * and re-planned each time. The hot queries list their columns, so a migration that adds one
 * does not invalidate the plans of processes still running the old code.
 */
function keepHotStatementsPrepared (client: pg.PoolClient): void {
  const query = client.query.bind(client) as (config: pg.QueryConfig | string, values?: unknown[]) => Promise<pg.QueryResult>
  client.query = ((text: unknown, values?: unknown[]) => {
    if (typeof text !== 'string' || !HOT_STATEMENTS.has(text)) return query(text as string, values)
    let name = statementNames.get(text)
    if (name === undefined) {
      name = `klaim_${hash('sha1', text, 'hex').slice(0, 16)}`
      statementNames.set(text, name)
    }
    return query({ name, text, values })
  }) as typeof client.query
}

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
  pool.on('connect', keepHotStatementsPrepared)
  return { db: new Kysely<DatabaseSchema>({ dialect: new PostgresDialect({ pool }) }), pool }
}

import type { Compilable, Kysely, QueryResult } from 'kysely'

export type Prepared<R> = (db: Kysely<any>, parameters: readonly unknown[]) => Promise<QueryResult<R>>

/**
 * Builds and compiles a query once; each call binds new parameters, in placeholder order, and
 * runs it on `db` (the pool, or a transaction). Kysely would otherwise rebuild and recompile
 * the same SQL on every request, a real share of the hot path's time.
 */
export function prepare<R> (query: Compilable<R>): Prepared<R> {
  const compiled = query.compile()
  HOT_STATEMENTS.add(compiled.sql)
  return async (db, parameters) =>
    (await DIRECT.get(db)?.(compiled.sql, parameters) as QueryResult<R> | undefined) ?? await db.executeQuery<R>({ ...compiled, parameters })
}

type DirectRunner = (sql: string, parameters: readonly unknown[]) => Promise<QueryResult<unknown> | undefined>
const DIRECT = new WeakMap<Kysely<any>, DirectRunner>()

/**
 * Lets prepared queries on `db` (itself, not its transactions) skip Kysely's executor: `run`
 * answers, or resolves to undefined to go through Kysely. Used by the SQLite driver; no plugins
 * are installed, so nothing is skipped but the chain of promises around the driver.
 */
export function runDirectly (db: Kysely<any>, run: DirectRunner): void {
  DIRECT.set(db, run)
}

/**
 * The SQL of every query compiled by `prepare`: a bounded set (a few reads, one UPDATE per set
 * of changed columns), which a driver may keep prepared on the server.
 */
export const HOT_STATEMENTS = new Set<string>()

import type { Compilable, Kysely, QueryResult } from 'kysely'

export type Prepared<R> = (db: Kysely<any>, parameters: readonly unknown[]) => Promise<QueryResult<R>>

/**
 * Builds and compiles a query once; each call binds new parameters, in placeholder order, and
 * runs it on `db` (the pool, or a transaction). Kysely would otherwise rebuild and recompile
 * the same SQL on every request, a real share of the hot path's time.
 */
export function prepare<R> (query: Compilable<R>): Prepared<R> {
  const compiled = query.compile()
  return async (db, parameters) => await db.executeQuery<R>({ ...compiled, parameters })
}

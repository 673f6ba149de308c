import type { Compilable, Dialect, Driver, QueryResult } from 'kysely'
import { CompiledQuery, Kysely, SelectQueryNode, SqliteAdapter, SqliteIntrospector, SqliteQueryCompiler } from './kysely.js'

export type Prepared<R> = (db: Kysely<any>, parameters: readonly unknown[]) => Promise<QueryResult<R>>

/**
 * Builds and compiles a query once; each call binds new parameters, in placeholder order, and
 * runs it on `db` (the pool, or a transaction). Kysely would otherwise rebuild and recompile
 * the same SQL on every request, a real share of the hot path's time.
 */
export function prepare<R> (query: Compilable<R>): Prepared<R> {
  const compiled = query.compile()
  HOT_STATEMENTS.add(compiled.sql)
  const write = !SelectQueryNode.is(compiled.query)
  return async (db, parameters) =>
    (await DIRECT.get(db)?.(compiled.sql, parameters, write) as QueryResult<R> | undefined) ?? await db.executeQuery<R>({ ...compiled, parameters })
}

/** Runs a prepared statement (`write`: not a SELECT), or resolves to undefined to go through Kysely. */
type DirectRunner = (sql: string, parameters: readonly unknown[], write: boolean) => Promise<QueryResult<unknown> | undefined>
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

/** A prepared write held back: its SQL and parameters. */
export type HeldWrite = readonly [sql: string, parameters: readonly unknown[]]

/** A database that can make held writes together, in one transaction of its own. */
export interface WriteHolder {
  /** Whether `commit` can run now; when not, the caller uses an ordinary transaction. */
  available(): boolean
  /**
   * Makes `writes` in order, in one transaction: true once committed; false, with nothing
   * written, when one of them changed no row (or they should go the ordinary way after all).
   * Throws (nothing written) when one fails; throws `HeldWritesInDoubt` when it cannot tell.
   */
  commit(writes: readonly HeldWrite[]): Promise<boolean>
}

/**
 * The connection was lost after the held writes' COMMIT was sent: they may have been made.
 * Not to be run again; answered as the database being unavailable (its `code`, 08006, is
 * PostgreSQL's connection_failure), so a client retries, with its Idempotency-Key.
 */
export class HeldWritesInDoubt extends Error {
  readonly code = '08006'
  constructor (cause: unknown) {
    super('the connection was lost before the held writes\' COMMIT was answered', { cause })
    this.name = 'HeldWritesInDoubt'
  }
}

const HOLDERS = new WeakMap<Kysely<any>, WriteHolder>()

/** Says that `db` can make held writes (see WriteHolder): SQLite on its thread, PostgreSQL on its pipelined connection. */
export function holdWritesOn (db: Kysely<any>, holder: WriteHolder): void {
  HOLDERS.set(db, holder)
}

export function writeHolder (db: Kysely<any>): WriteHolder | undefined {
  return HOLDERS.get(db)
}

/** Refuses every query that is not a prepared one: on a recording stand-in, nothing else may run. */
async function refuse (): Promise<never> {
  throw new Error('only prepared statements run while writes are held back')
}
const refusing: Driver = {
  init: refuse,
  acquireConnection: refuse,
  beginTransaction: refuse,
  commitTransaction: refuse,
  rollbackTransaction: refuse,
  releaseConnection: refuse,
  destroy: refuse
}
const REFUSING_DIALECT: Dialect = {
  createAdapter: () => new SqliteAdapter(),
  createDriver: () => refusing,
  createQueryCompiler: () => new SqliteQueryCompiler(),
  createIntrospector: (kysely) => new SqliteIntrospector(kysely)
}
let refusingBase: Kysely<any> | undefined

/**
 * A stand-in for `db` on which prepared reads run on `db` at once, and prepared writes are only
 * recorded, in order, in `writes`, each answering as if it had changed (and returned) one row.
 * Any other query on it fails.
 */
export function recordingWrites (db: Kysely<any>): { db: Kysely<any>, writes: HeldWrite[] } {
  refusingBase ??= new Kysely({ dialect: REFUSING_DIALECT })
  // A Kysely of its own (it costs well under a microsecond), so that DIRECT finds this recording.
  const stand = refusingBase.withoutPlugins()
  const writes: HeldWrite[] = []
  const direct = DIRECT.get(db)
  DIRECT.set(stand, async (sql, parameters, write) => {
    if (write) {
      writes.push([sql, parameters])
      // At once: one row changed, and one returned (with no columns).
      return { numAffectedRows: 1n, rows: [{}] }
    }
    return await direct?.(sql, parameters, false) ?? await db.executeQuery(CompiledQuery.raw(sql, [...parameters]))
  })
  return { db: stand, writes }
}

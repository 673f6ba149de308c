import { hash } from 'node:crypto'
import pg from 'pg'
import { endsPostgresSession } from './database-errors.js'
import { Kysely, PostgresDialect } from './kysely.js'
import { PostgresPipeline } from './postgres-pipeline.js'
import { HOT_STATEMENTS, holdWritesOn, runDirectly } from './prepared.js'
import type { DatabaseSchema } from './schema.js'

const statementNames = new Map<string, string>()

/** The server-side name of a hot statement: the same on every connection, a pooled or the pipelined one. */
function statementName (text: string): string {
  let name = statementNames.get(text)
  if (name === undefined) {
    name = `klaim_${hash('sha1', text, 'hex').slice(0, 16)}`
    statementNames.set(text, name)
  }
  return name
}

/**
 * Runs the hot path's queries as named statements: each connection has the server parse and
 * plan them once, then only binds parameters. Kysely sends every query as unnamed, re-parsed
 * and re-planned each time. The hot queries list their columns, so a migration that adds one
 * does not invalidate the plans of processes still running the old code.
 */
function keepHotStatementsPrepared (client: pg.PoolClient): void {
  const query = client.query.bind(client) as (...args: unknown[]) => Promise<pg.QueryResult>
  client.query = ((...args: unknown[]) => {
    const [text, values] = args
    // Anything but Kysely's (text, values) promise call passes through as it came (pool.query
    // adds a callback, for one).
    if (args.length > 2 || typeof values === 'function' || typeof text !== 'string' || !HOT_STATEMENTS.has(text)) return query(...args)
    return query({ name: statementName(text), text, values })
  }) as typeof client.query
}

/**
 * How much longer than the server's `statement_timeout` the client waits for an answer: time
 * for the server's own cancellation to arrive, when the network still carries it.
 */
const READ_TIMEOUT_GRACE_MS = 1000

/**
 * Keeps a lost connection from crashing the process, or from going back to the pool.
 * - The pool listens for a client's errors only while it is idle, and pg emits 'error' when the
 *   connection ends under a checked-out client (a reset, a crashed backend): unheard, that error
 *   would crash the process. Nothing is lost by hearing it here: the query in flight fails with
 *   it (a 503), so does any later query on the client, and the pool discards the client when it
 *   is released.
 * - When the server ends the session (a FATAL error: terminated by an administrator or by
 *   `idle_in_transaction_session_timeout`, a server shutting down), the query fails before the
 *   socket closes, and the client would be released first: back in the pool, it would fail the
 *   next request too. Ending it marks it at once, so the pool discards it at release.
 * - So does a query that got no answer in time (the read timeout): its connection still waits
 *   for that answer, and may never get one.
 */
function surviveConnectionLoss (client: pg.PoolClient): void {
  client.on('error', () => {})
  const endIfSessionEnded = (error: unknown): never => {
    if (endsPostgresSession(error)) client.end().catch(() => {})
    throw error
  }
  const query = client.query.bind(client) as (...args: unknown[]) => unknown
  client.query = ((...args: unknown[]) => {
    const result = query(...args)
    // A callback or a submittable (a cursor) comes back as it was.
    return result instanceof Promise ? result.catch(endIfSessionEnded) : result
  }) as typeof client.query
}

export interface PostgresOptions {
  poolMax: number
  /** How long a statement waits for another transaction's lock before failing (`lock_timeout`; 0: no limit). */
  lockTimeoutMs: number
  /**
   * How long a statement may run (`statement_timeout`); the client waits a second more for its
   * answer, then gives the connection up, so a network that drops packets (a partition, a
   * database host that vanished) cannot hold a request, or a pooled connection, for the
   * quarter of an hour TCP takes to give up. 0: no limit, either.
   */
  statementTimeoutMs: number
  /** Told about errors of idle clients (a restarted server, say), which the pool replaces, and of the pipelined connection's. */
  onPoolError: (error: Error) => void
  /** Send the prepared statements run outside transactions on one pipelined connection (see PostgresPipeline). */
  pipeline: boolean
}

/**
 * Ends a session left idle inside a transaction, so the locks of a client that vanished
 * mid-transaction (a partitioned or dead host, which sends no reset) are released after this
 * long, not after the server's TCP keepalive gives up (two hours by default). Transactions here
 * go from one statement to the next without waiting on anything but the database, except the
 * first app's, once in a database's life, which writes and syncs its key's file (milliseconds).
 */
const IDLE_IN_TRANSACTION_MS = 10_000

export function openPostgres (connectionString: string, options: PostgresOptions): { db: Kysely<DatabaseSchema>, pool: pg.Pool, pipeline: PostgresPipeline | undefined, close: () => Promise<void> } {
  const config: pg.ClientConfig = {
    connectionString,
    // Sent as startup parameters (a DATABASE_URL query parameter of the same name overrides).
    // A request held behind a lock that is not released fails (503) instead of waiting on.
    lock_timeout: options.lockTimeoutMs,
    idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_MS,
    statement_timeout: options.statementTimeoutMs,
    query_timeout: options.statementTimeoutMs > 0 ? options.statementTimeoutMs + READ_TIMEOUT_GRACE_MS : undefined,
    // Fail fast while the database is down, so callers get a 503 instead of waiting forever.
    connectionTimeoutMillis: 5000
  }
  const pool = new pg.Pool({ ...config, max: options.poolMax })
  // Without a listener an idle client's error would crash the process.
  pool.on('error', options.onPoolError)
  pool.on('connect', (client) => {
    surviveConnectionLoss(client)
    keepHotStatementsPrepared(client)
  })
  const db = new Kysely<DatabaseSchema>({ dialect: new PostgresDialect({ pool }) })
  if (!options.pipeline) return { db, pool, pipeline: undefined, close: async () => { await db.destroy() } }

  const pipeline = new PostgresPipeline(config, options.onPoolError)
  runDirectly(db, async (text, values) => await pipeline.run(statementName(text), text, values))
  // Held writes (see Transactor.guardedTransaction) go out together on it too, while it is open.
  holdWritesOn(db, {
    available: () => pipeline.open,
    commit: async (writes) => await pipeline.transaction(writes.map(([text, values]) => ({ name: statementName(text), text, values }))) === true
  })
  return {
    db,
    pool,
    pipeline,
    close: async () => {
      await pipeline.close()
      await db.destroy()
    }
  }
}

import type { AppRepository, IdempotencyStore, Transactor, UserRepository } from '../../application/ports.js'
import { parseDatabaseUrl, type DatabaseLocation } from './database-url.js'
import { kyselyAppRepository } from './kysely-app-repository.js'
import { compileIdempotencyQueries, kyselyIdempotencyStore } from './kysely-idempotency-store.js'
import { kyselyTransactor } from './kysely-transactor.js'
import { compileUserQueries, kyselyUserRepository } from './kysely-user-repository.js'
import { sql, type Kysely } from './kysely.js'
import { migrateToLatest } from './migrations/index.js'
import type { openPostgres, PostgresOptions } from './postgres.js'
import type { DatabaseSchema } from './schema.js'
import { openSqlite, THREAD_RESTART_INTERVAL_MS, type SqliteOptions, type SqliteSynchronous } from './sqlite.js'

export interface PersistenceOptions {
  databaseUrl: string
  poolMax?: number
  /**
   * How long a statement waits for a lock another transaction holds before failing as
   * unavailable (default 5000 ms): on PostgreSQL a lock left by a vanished client, on SQLite the
   * write lock of another process on the file (a long CLI command, a `VACUUM`). Neither can hold
   * requests, and with them the pool's connections, indefinitely. 0: no limit.
   */
  lockTimeoutMs?: number
  /**
   * PostgreSQL only: how long a statement may run before the server cancels it (default 15000
   * ms); the client gives up on the connection a second later, as after a network partition.
   * Either way the request fails as unavailable. 0: no limit.
   */
  postgresStatementTimeoutMs?: number
  sqliteSynchronous?: SqliteSynchronous
  /**
   * Hears of a database connection that failed and is replaced: on PostgreSQL an idle one of the
   * pool, or the pipelined one (see `postgresPipeline`); on a SQLite file the one of the
   * statement thread (see `SqliteThread`), started again at once or, as the error says, within
   * `sqliteThreadRestartIntervalMs`.
   */
  onPoolError?: (error: Error) => void
  /**
   * PostgreSQL only: send the prepared statements run outside transactions (the hot path of
   * every read and update) on one pipelined connection, beside the pool (default true; see
   * `PostgresPipeline`). false: every statement goes through the pool.
   */
  postgresPipeline?: boolean
  /**
   * SQLite only: checkpoint the WAL from a worker thread, off the event loop, reporting failures
   * here. For long-running servers; off by default (a one-shot command has no use for it).
   */
  sqliteBackgroundCheckpoints?: { onError: (error: Error) => void }
  /**
   * SQLite file only: the least time between two starts of the statement thread when it keeps
   * stopping (default 60000 ms, a minute; at least 1000; see `SqliteDriver.startThread`).
   */
  sqliteThreadRestartIntervalMs?: number
  /** Apply pending migrations first (default true). */
  migrate?: boolean
}

/**
 * What a PostgreSQL pool tells about its connections (pg's `Pool` has them). Typed here rather
 * than as `pg.Pool` so that the package's declarations need no `@types/pg`, a dev dependency.
 */
export interface PoolGauges {
  readonly totalCount: number
  readonly idleCount: number
  readonly waitingCount: number
}

/**
 * What the pipelined PostgreSQL connection tells (see `PostgresPipeline`), typed here for the
 * same reason as PoolGauges.
 */
export interface PipelineGauges {
  /** Whether the connection is open now. */
  readonly open: boolean
  /**
   * Statements handed to the pool since start: after a lock wait past the timeout, for want of a
   * connection, or because they were sent behind a Parse of theirs that failed.
   */
  readonly handedToPool: { readonly lockWait: number, readonly noConnection: number, readonly notPrepared: number }
}

export interface Persistence {
  location: DatabaseLocation
  db: Kysely<DatabaseSchema>
  /** The PostgreSQL pool's gauges, else undefined. */
  pool: PoolGauges | undefined
  /** The pipelined PostgreSQL connection's gauges, else undefined (SQLite, or `postgresPipeline: false`). */
  pipeline: PipelineGauges | undefined
  users: UserRepository
  apps: AppRepository
  idempotency: IdempotencyStore
  transactor: Transactor
  migrate(): Promise<string[]>
  /** Resolves when the database answers a trivial query. */
  ping(): Promise<void>
  close(): Promise<void>
}

function integerOption (name: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) throw new TypeError(`${name} must be an integer of at least ${min}`)
  return value
}

async function sqliteWithClose (filename: string, options: SqliteOptions): Promise<{ db: Kysely<DatabaseSchema>, pool: undefined, pipeline: undefined, close: () => Promise<void> }> {
  const db = await openSqlite(filename, options)
  return { db, pool: undefined, pipeline: undefined, close: async () => { await db.destroy() } }
}

/** PostgreSQL's modules (pg's above all: about 70 ms of a process's start) load only when used. */
async function postgresWithClose (connectionString: string, options: PostgresOptions): Promise<ReturnType<typeof openPostgres>> {
  const postgres = await import('./postgres.js')
  return postgres.openPostgres(connectionString, options)
}

/** Opens the database named by a URL with every repository of the ports wired to it. */
export async function openPersistence (options: PersistenceOptions): Promise<Persistence> {
  const location = parseDatabaseUrl(options.databaseUrl)
  if (location === undefined) throw new TypeError('databaseUrl must be sqlite:<path>, sqlite::memory:, postgres://... or postgresql://...')
  const poolMax = integerOption('poolMax', options.poolMax ?? 10, 1)
  const lockTimeoutMs = integerOption('lockTimeoutMs', options.lockTimeoutMs ?? 5000, 0)
  const statementTimeoutMs = integerOption('postgresStatementTimeoutMs', options.postgresStatementTimeoutMs ?? 15_000, 0)
  const usePipeline = options.postgresPipeline ?? true
  if (typeof usePipeline !== 'boolean') throw new TypeError('postgresPipeline must be true or false')
  const sqliteOptions: SqliteOptions = {
    synchronous: options.sqliteSynchronous ?? 'NORMAL',
    lockTimeoutMs,
    checkpointInBackground: options.sqliteBackgroundCheckpoints,
    onThreadError: options.onPoolError,
    threadRestartIntervalMs: integerOption('sqliteThreadRestartIntervalMs', options.sqliteThreadRestartIntervalMs ?? THREAD_RESTART_INTERVAL_MS, 1000)
  }
  const { db, pool, pipeline, close } = location.dialect === 'postgres'
    ? await postgresWithClose(location.connectionString, {
      poolMax,
      lockTimeoutMs,
      statementTimeoutMs,
      onPoolError: options.onPoolError ?? (() => {}),
      pipeline: usePipeline
    })
    : await sqliteWithClose(location.filename, sqliteOptions)
  const dialect = location.dialect
  const queries = { users: compileUserQueries(db, dialect), idempotency: compileIdempotencyQueries(db) }
  const persistence: Persistence = {
    location,
    db,
    pool,
    pipeline,
    users: kyselyUserRepository(db, queries.users, false),
    apps: kyselyAppRepository(db, dialect),
    idempotency: kyselyIdempotencyStore(db, queries.idempotency),
    transactor: kyselyTransactor(db, queries),
    migrate: async () => await migrateToLatest(db, dialect),
    ping: async () => { await sql`select 1`.execute(db) },
    close
  }
  if (options.migrate !== false) {
    try {
      await persistence.migrate()
    } catch (error) {
      await close()
      throw error
    }
  }
  return persistence
}

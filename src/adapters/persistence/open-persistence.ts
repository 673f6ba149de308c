import type { AppRepository, IdempotencyStore, RateCounter, Transactor, UserRepository } from '../../application/ports.js'
import { parseDatabaseUrl, type DatabaseLocation } from './database-url.js'
import { kyselyAppRepository } from './kysely-app-repository.js'
import { compileIdempotencyQueries, kyselyIdempotencyStore } from './kysely-idempotency-store.js'
import { compileRateCounterQueries, kyselyRateCounter } from './kysely-rate-counter.js'
import { kyselyTransactor } from './kysely-transactor.js'
import { compileUserQueries, kyselyUserRepository } from './kysely-user-repository.js'
import { sql, type Kysely } from './kysely.js'
import { migrateToLatest } from './migrations/index.js'
import type { PersistenceOptions, PipelineGauges, PoolGauges } from './persistence-options.js'
import { snapshotOpener, type OpenSnapshot } from './read-snapshot.js'
import type { openPostgres, PostgresOptions } from './postgres.js'
import type { DatabaseSchema } from './schema.js'
import { openSqlite, THREAD_RESTART_INTERVAL_MS, type SqliteOptions } from './sqlite.js'

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
  rateCounter: RateCounter
  transactor: Transactor
  /** A read-only transaction that sees one moment (see Transactor.readSnapshot); close it. */
  openSnapshot(): Promise<OpenSnapshot>
  migrate(): Promise<string[]>
  /** The migrations the opening applied, in order: none when the database was up to date, or with `migrate: false`. */
  migrated: string[]
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
  const queries = { users: compileUserQueries(db, dialect), idempotency: compileIdempotencyQueries(db, dialect) }
  const openSnapshot = snapshotOpener(location, db, lockTimeoutMs)
  const persistence: Persistence = {
    location,
    db,
    pool,
    pipeline,
    users: kyselyUserRepository(db, queries.users, false),
    apps: kyselyAppRepository(db, dialect),
    idempotency: kyselyIdempotencyStore(db, queries.idempotency),
    rateCounter: kyselyRateCounter(db, compileRateCounterQueries(db)),
    transactor: kyselyTransactor(db, queries, openSnapshot),
    openSnapshot,
    migrate: async () => await migrateToLatest(db, dialect),
    migrated: [],
    ping: async () => { await sql`select 1`.execute(db) },
    close
  }
  if (options.migrate !== false) {
    try {
      persistence.migrated = await persistence.migrate()
    } catch (error) {
      await close()
      throw error
    }
  }
  return persistence
}

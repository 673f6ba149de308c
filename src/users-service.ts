import { sql } from 'kysely'
import { authenticate, createApiKey, createApp } from './application/apps.js'
import { createUser } from './application/create-user.js'
import { getUser } from './application/get-user.js'
import type { Clock, IdSource } from './application/ports.js'
import { updateUserProfile } from './application/update-user-profile.js'
import { parseDatabaseUrl, type DatabaseLocation } from './adapters/persistence/database-url.js'
import { kyselyAppRepository } from './adapters/persistence/kysely-app-repository.js'
import { kyselyTransactor } from './adapters/persistence/kysely-transactor.js'
import { kyselyUserRepository } from './adapters/persistence/kysely-user-repository.js'
import { migrateToLatest } from './adapters/persistence/migrations/index.js'
import { openPostgres } from './adapters/persistence/postgres.js'
import { openSqlite, type SqliteSynchronous } from './adapters/persistence/sqlite.js'
import { cryptoIds, sha256Keys, systemClock } from './adapters/system.js'

export interface UsersServiceOptions {
  /** `sqlite:<path>`, `sqlite::memory:`, `postgres://...` or `postgresql://...`. */
  databaseUrl: string
  /** PostgreSQL pool size (default 10). */
  poolMax?: number
  /** SQLite `synchronous` (default `NORMAL`: durable through a process crash, not a power loss). */
  sqliteSynchronous?: SqliteSynchronous
  /** Errors of idle pooled PostgreSQL connections; the pool replaces them either way. */
  onPoolError?: (error: Error) => void
  /** Pending migrations are applied at open unless this is false. */
  migrate?: boolean
  clock?: Clock
  ids?: IdSource
}

/** Opens the database, migrates it and wires every use case to it. */
export async function openUsersService (options: UsersServiceOptions) {
  const location = parseDatabaseUrl(options.databaseUrl)
  if (location === undefined) throw new TypeError('databaseUrl must be sqlite:<path>, sqlite::memory: or postgres://...')
  const { db, pool } = location.dialect === 'postgres'
    ? openPostgres(location.connectionString, { poolMax: options.poolMax ?? 10, onPoolError: options.onPoolError ?? (() => {}) })
    : { db: openSqlite(location.filename, options.sqliteSynchronous ?? 'NORMAL'), pool: undefined }
  const dialect = location.dialect
  try {
    if (options.migrate !== false) await migrateToLatest(db, dialect)
  } catch (error) {
    await db.destroy()
    throw error
  }

  const clock = options.clock ?? systemClock
  const ids = options.ids ?? cryptoIds
  const users = kyselyUserRepository(db, dialect, false)
  const apps = kyselyAppRepository(db)
  const transactor = kyselyTransactor(db, dialect)
  const appDeps = { apps, clock, ids, keys: sha256Keys }

  return {
    location: location satisfies DatabaseLocation,
    /** The pg pool on PostgreSQL (for its gauges), else undefined. */
    pool,
    transactor,
    createUser: createUser({ transactor, apps, clock, ids }),
    getUser: getUser({ users }),
    updateUserProfile: updateUserProfile({ transactor, clock }),
    createApp: createApp(appDeps),
    createApiKey: createApiKey(appDeps),
    listApps: async () => await apps.listApps(),
    listApiKeys: async ({ appId }: { appId: string }) => await apps.listKeys(appId),
    revokeApiKey: async ({ keyId }: { keyId: string }) => await apps.revokeKey(keyId, clock.now()),
    authenticate: authenticate(appDeps),
    /** Resolves when the database answers a trivial query; rejects otherwise. */
    async ping (): Promise<void> {
      await sql`select 1`.execute(db)
    },
    async close (): Promise<void> {
      await db.destroy()
    }
  }
}

export type UsersService = Awaited<ReturnType<typeof openUsersService>>

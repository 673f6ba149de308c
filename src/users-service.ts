import { authenticate, createApiKey, createApp, createFirstApp, deleteApp, listApiKeys } from './application/apps.js'
import { createUser } from './application/create-user.js'
import { deleteUser } from './application/delete-user.js'
import { exportUsers } from './application/export-users.js'
import { getUser } from './application/get-user.js'
import { idempotent } from './application/idempotency.js'
import type { Clock, IdSource } from './application/ports.js'
import { updateUserProfile } from './application/update-user-profile.js'
import { copyDatabaseTo } from './adapters/persistence/copy-database.js'
import type { CopiedCounts, ServerAnnouncement } from './adapters/persistence/exported.js'
import { openPersistence } from './adapters/persistence/open-persistence.js'
import type { PersistenceOptions } from './adapters/persistence/persistence-options.js'
import { announceServer } from './adapters/persistence/server-registry.js'
import { cryptoIds, sha256Keys, systemClock } from './adapters/system.js'

export interface UsersServiceOptions extends PersistenceOptions {
  /** `sqlite:<path>`, `sqlite::memory:`, `postgres://...` or `postgresql://...`. */
  databaseUrl: string
  clock?: Clock
  ids?: IdSource
}

/** Opens the database, migrates it and wires every use case to it. */
export async function openUsersService (options: UsersServiceOptions) {
  const persistence = await openPersistence(options)
  const { users, apps, transactor, idempotency } = persistence
  const clock = options.clock ?? systemClock
  const ids = options.ids ?? cryptoIds
  const appDeps = { apps, clock, ids, keys: sha256Keys }

  return {
    location: persistence.location,
    /** The migrations opening the service applied, in order (none when the database was up to date). */
    migrated: persistence.migrated,
    /** The PostgreSQL pool's connection gauges (for metrics), else undefined. */
    pool: persistence.pool,
    /** The pipelined PostgreSQL connection's gauges (for metrics), else undefined. */
    pipeline: persistence.pipeline,
    createUser: createUser({ transactor, clock, ids }),
    getUser: getUser({ users }),
    updateUserProfile: updateUserProfile({ transactor, clock }),
    /** Erases a user and the stored answers that carry it (the CLI's `users delete`; not in the HTTP API). See the README's Operator CLI. */
    deleteUser: deleteUser({ users, apps, idempotency }),
    /** Every user of an app as of one moment, a page at a time (the CLI's `users export`). See the README's Operator CLI. */
    exportUsers: exportUsers({ apps, transactor }),
    createApp: createApp(appDeps),
    /** The first start's app `default` with a key, unless the database has ever held an app (then undefined); `keep` puts its key somewhere before the commit. */
    createFirstApp: createFirstApp(appDeps),
    createApiKey: createApiKey(appDeps),
    listApps: async () => await apps.listApps(),
    listApiKeys: listApiKeys(appDeps),
    revokeApiKey: async ({ keyId }: { keyId: string }) => await apps.revokeKey(keyId, clock.now()),
    /**
     * Copies everything (apps, keys, users, stored answers) into the empty database at
     * `databaseUrl`, migrating it first (the CLI's `copy`). See the README's Operator CLI.
     */
    copyTo: async ({ databaseUrl }: { databaseUrl: string }): Promise<CopiedCounts> => await copyDatabaseTo(persistence, databaseUrl, clock.now()),
    /**
     * Marks this process as serving the database until `stop()`, so that `copyTo` (here or in
     * any process) refuses meanwhile: a row in the database, its time seen written every 10 s.
     * The HTTP server does it; a host serving writes in-process may too. A heartbeat that fails
     * goes to `onError` and is made again 10 s later.
     */
    announceServer: async (options?: { onError?: (error: Error) => void }): Promise<ServerAnnouncement> =>
      await announceServer(persistence.db, persistence.location.dialect, options),
    /** Deletes an app and all it holds (the CLI's `apps delete`). See the README's Operator CLI. */
    deleteApp: deleteApp(appDeps),
    authenticate: authenticate(appDeps),
    idempotent: idempotent({ transactor, store: idempotency, clock }),
    /** Deletes idempotency keys past their 24 hours; returns how many. */
    purgeExpiredIdempotencyKeys: async () => await idempotency.purgeExpired(clock.now()),
    /** Request counts shared by every process on the database, for rate limits (RATE_LIMIT_STORE=database). */
    rateCounter: persistence.rateCounter,
    migrate: persistence.migrate,
    ping: persistence.ping,
    close: persistence.close
  }
}

export type UsersService = Awaited<ReturnType<typeof openUsersService>>

import type { Migration, MigrationProvider } from 'kysely'
import { Migrator, type Kysely } from '../kysely.js'
import type { DialectName } from '../database-url.js'
import * as initial from './0001-initial.js'
import * as idempotencyKeys from './0002-idempotency-keys.js'
import * as rateLimits from './0003-rate-limits.js'
import * as servers from './0004-servers.js'
import * as milestones from './0005-milestones.js'

type DialectMigration = { up: (db: Kysely<any>, dialect: DialectName) => Promise<void> }

// A static list, in order: no folder scanning, so the compiled package carries its migrations.
// On PostgreSQL they run under the pool's statement_timeout (15 s): a migration that needs
// longer (an index on a large table) must raise it for itself (`set local statement_timeout`).
const MIGRATIONS: Record<string, DialectMigration> = {
  '0001-initial': initial,
  '0002-idempotency-keys': idempotencyKeys,
  '0003-rate-limits': rateLimits,
  '0004-servers': servers,
  '0005-milestones': milestones
}

function provider (dialect: DialectName): MigrationProvider {
  return {
    async getMigrations () {
      const migrations: Record<string, Migration> = {}
      for (const [name, migration] of Object.entries(MIGRATIONS)) {
        migrations[name] = { up: async (db) => await migration.up(db, dialect) }
      }
      return migrations
    }
  }
}

/**
 * Applies every pending migration, or those up to and including `upTo` (a test's way to build a
 * database as an older version left it); throws when one fails (nothing of it stays applied).
 */
export async function migrateToLatest (db: Kysely<any>, dialect: DialectName, upTo?: string): Promise<string[]> {
  const migrator = new Migrator({ db, provider: provider(dialect) })
  const { error, results } = upTo === undefined ? await migrator.migrateToLatest() : await migrator.migrateTo(upTo)
  if (error !== undefined) throw error
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName)
}

import type { Kysely } from 'kysely'
import type { DialectName } from '../database-url.js'

// Frozen once landed. One row per rate-limit bucket (an API key, or a client address's failed
// authentications) for RATE_LIMIT_STORE=database: the window it counts (its start, epoch ms)
// and the requests counted in it, shared by every process on the database.
export async function up (db: Kysely<any>, _dialect: DialectName): Promise<void> {
  await db.schema.createTable('rate_limits')
    .addColumn('bucket', 'text', (c) => c.primaryKey())
    .addColumn('window_start', 'bigint', (c) => c.notNull())
    .addColumn('hits', 'integer', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('rate_limits_window_start').on('rate_limits').column('window_start').execute()
}

import type { Kysely } from 'kysely'
import type { DialectName } from '../database-url.js'

// Frozen once landed. One row per (API key, Idempotency-Key): the request's fingerprint, and
// its response once there is one (status null while the first request runs).
export async function up (db: Kysely<any>, _dialect: DialectName): Promise<void> {
  await db.schema.createTable('idempotency_keys')
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('fingerprint', 'text', (c) => c.notNull())
    .addColumn('status', 'integer')
    .addColumn('body', 'text')
    .addColumn('headers', 'text')
    .addColumn('locked_until', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('idempotency_keys_pkey', ['scope', 'key'])
    .execute()
  await db.schema.createIndex('idempotency_keys_expires_at').on('idempotency_keys').column('expires_at').execute()
}

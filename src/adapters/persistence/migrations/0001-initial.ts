import { sql, type Kysely } from '../kysely.js'
import type { DialectName } from '../database-url.js'

// Frozen once landed: change the schema with a new migration, never by editing this one.
// Types are chosen to mean the same on both dialects; metadata is the one written difference.
export async function up (db: Kysely<any>, dialect: DialectName): Promise<void> {
  await db.schema.createTable('apps')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute()

  await db.schema.createTable('api_keys')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('app_id', 'text', (c) => c.notNull().references('apps.id'))
    .addColumn('key_hash', 'text', (c) => c.notNull().unique())
    .addColumn('prefix', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('revoked_at', 'bigint')
    .execute()
  await db.schema.createIndex('api_keys_app_id').on('api_keys').column('app_id').execute()

  await db.schema.createTable('users')
    .addColumn('klaim_id', 'text', (c) => c.primaryKey())
    .addColumn('app_id', 'text', (c) => c.notNull().references('apps.id'))
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('email', 'text', (c) => c.notNull())
    .addColumn('email_key', 'text', (c) => c.notNull())
    .addColumn('name', 'text')
    // SQLite has no JSON type: text holding compact JSON. PostgreSQL: jsonb (keys reordered).
    .addColumn('metadata', dialect === 'postgres' ? 'jsonb' : 'text', (c) => c.notNull().defaultTo(sql`'{}'`))
    .addColumn('credit_balance', 'double precision', (c) => c.notNull().defaultTo(0))
    .addColumn('acquisition_source', 'text', (c) => c.notNull()
      .check(sql`acquisition_source in ('api', 'promotion', 'member_manual')`))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull().defaultTo(1))
    .execute()
  await db.schema.createIndex('users_app_user_id_key').unique().on('users').columns(['app_id', 'user_id']).execute()
  await db.schema.createIndex('users_app_email_key').unique().on('users').columns(['app_id', 'email_key']).execute()
}

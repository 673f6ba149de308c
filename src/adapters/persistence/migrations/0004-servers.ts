import type { Kysely } from 'kysely'
import type { DialectName } from '../database-url.js'

// Frozen once landed. One row per running server (see server-registry.ts): written when it
// starts, its `seen_at` every few seconds while it runs (by the database's clock, in epoch ms),
// deleted when it stops. `copy` refuses while one is seen.
export async function up (db: Kysely<any>, _dialect: DialectName): Promise<void> {
  await db.schema.createTable('servers')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('host', 'text', (c) => c.notNull())
    .addColumn('pid', 'integer', (c) => c.notNull())
    .addColumn('started_at', 'bigint', (c) => c.notNull())
    .addColumn('seen_at', 'bigint', (c) => c.notNull())
    .execute()
}

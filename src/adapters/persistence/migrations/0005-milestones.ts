import { sql, type Kysely } from '../kysely.js'
import type { DialectName } from '../database-url.js'

// Frozen once landed. Things that happened once in the database's life, by name, with when
// (epoch ms). 'first-app': it has held an app, so a start that finds no app does not create the
// app `default` (its apps were deleted; see first-start.ts). A database migrated with apps has
// held one since the oldest.
export async function up (db: Kysely<any>, _dialect: DialectName): Promise<void> {
  await db.schema.createTable('milestones')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('reached_at', 'bigint', (c) => c.notNull())
    .execute()
  await sql`insert into milestones (name, reached_at) select 'first-app', min(created_at) from apps having count(*) > 0`.execute(db)
}

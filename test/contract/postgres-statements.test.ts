import { sql } from 'kysely'
import t from 'tap'
import { openPersistence } from '../../src/adapters/persistence/open-persistence.js'
import { databases } from '../helpers/databases.js'
import { sampleUser } from '../helpers/users.js'

const postgres = databases.find((db) => db.dialect === 'postgres')
if (postgres === undefined) {
  if (process.env.REQUIRE_POSTGRES === '1') throw new Error('REQUIRE_POSTGRES=1 but no TEST_DATABASE_URL')
  t.comment('!!! no PostgreSQL (TEST_DATABASE_URL): the prepared-statement tests are SKIPPED')
  t.pass('skipped: no PostgreSQL')
} else {
  t.test('the hot queries are prepared once per connection, and survive a migration that adds a column', async (t) => {
    // One connection, so every query below runs on the session we inspect.
    const persistence = await openPersistence({ databaseUrl: await postgres.fresh(t), poolMax: 1 })
    t.teardown(async () => await persistence.close())
    await persistence.apps.insertApp({ appId: 'app_1', name: 'app', createdAt: 1 })
    const ada = sampleUser({ appId: 'app_1', klaimId: 'k1', userId: 'ada' })
    await persistence.users.insert(ada)
    const found = await persistence.users.findByUserId('app_1', 'ada')
    t.ok(found)
    await persistence.users.update({ ...ada, name: 'Ada', updatedAt: 2, version: 2 }, ada)
    await persistence.apps.findKeyByHash('nope')

    const prepared = await sql<{ name: string, statement: string }>`select name, statement from pg_prepared_statements order by statement`.execute(persistence.db)
    const statements = prepared.rows.map((r) => r.statement)
    t.ok(prepared.rows.every((r) => r.name.startsWith('klaim_')), 'only the named hot statements')
    t.match(statements, [/^select "app_id", "klaim_id".* from "users" where/, /^select .* from "api_keys"/, /^update "users" set "name" = \$1, "updated_at"/])

    // Another process's migration adds a column: with `select *` this process's prepared read
    // would fail with "cached plan must not change result type".
    await sql`alter table users add column nickname text`.execute(persistence.db)
    t.match(await persistence.users.findByUserId('app_1', 'ada'), { name: 'Ada', version: 2 })
  })
}

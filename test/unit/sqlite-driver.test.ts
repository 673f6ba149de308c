import { CompiledQuery, sql } from 'kysely'
import t from 'tap'
import { openPersistence } from '../../src/adapters/persistence/open-persistence.js'
import { HOT_STATEMENTS } from '../../src/adapters/persistence/prepared.js'
import { sampleUser } from '../helpers/users.js'

t.test('a query outside a transaction waits for the connection; it never runs inside another\'s transaction', async (t) => {
  const persistence = await openPersistence({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await persistence.close())
  await persistence.apps.insertApp({ appId: 'app', name: 'app', createdAt: 1 })

  let entered!: () => void
  const inside = new Promise<void>((resolve) => { entered = resolve })
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  const transaction = persistence.transactor.transaction(async (uow) => {
    await uow.users.insert(sampleUser({ appId: 'app', userId: 'ada' }))
    entered()
    await gate
  })
  await inside

  // SQLite has one connection: run at once, this read would see the uncommitted insert.
  let answered = false
  const read = persistence.users.findByUserId('app', 'ada').finally(() => { answered = true })
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(answered, false, 'queued behind the open transaction')

  release()
  await transaction
  t.match(await read, { userId: 'ada' }, 'answered after the commit')
  t.match(await persistence.users.findByUserId('app', 'ada'), { userId: 'ada' }, 'and at once when the connection is free')
})

t.test('an update finds its row through the (app_id, user_id) index that the read before it walked', async (t) => {
  const persistence = await openPersistence({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await persistence.close())
  await persistence.apps.insertApp({ appId: 'app', name: 'app', createdAt: 1 })
  const ada = sampleUser({ appId: 'app', userId: 'ada' })
  await persistence.users.insert(ada)
  await persistence.users.update({ ...ada, name: 'Ada', version: 2 }, ada)

  const updates = [...HOT_STATEMENTS].filter((sql) => sql.startsWith('update "users"'))
  t.ok(updates.length > 0)
  for (const sql of updates) {
    const parameters = Array.from(sql.matchAll(/\?/g), () => null)
    const plan = await persistence.db.executeQuery<{ detail: string }>(CompiledQuery.raw(`explain query plan ${sql}`, parameters))
    t.match(plan.rows.map((row) => row.detail).join('; '), /USING INDEX users_app_user_id_key \(app_id=\? AND user_id=\?\)/, sql)
  }
})

t.test('a transaction that SQLite rolled back by itself reports the error that ended it', async (t) => {
  const persistence = await openPersistence({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await persistence.close())
  await persistence.apps.insertApp({ appId: 'app', name: 'app', createdAt: 1 })
  // RAISE(ROLLBACK) ends the whole transaction, as some errors (a full disk, say) can.
  await sql`create temp trigger boom before insert on users when new.user_id = 'boom' begin select raise(rollback, 'boom'); end`.execute(persistence.db)

  await t.rejects(persistence.transactor.transaction(async ({ users }) => {
    await users.insert(sampleUser({ appId: 'app', userId: 'ada', klaimId: 'k1' }))
    await users.insert(sampleUser({ appId: 'app', userId: 'boom', klaimId: 'k2', email: 'boom@example.com' }))
  }), { message: 'boom' }, 'not "cannot rollback - no transaction is active"')
  t.equal(await persistence.users.findByUserId('app', 'ada'), undefined, 'nothing of it stays')
})

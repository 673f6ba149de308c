import t from 'tap'
import { openPersistence } from '../../src/adapters/persistence/open-persistence.js'
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

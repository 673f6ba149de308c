import t from 'tap'
import { buildHttpApp } from '../../src/adapters/http/app.js'
import { CopyRefused } from '../../src/adapters/persistence/copy-outcome.js'
import { sql } from '../../src/adapters/persistence/kysely.js'
import { openPersistence } from '../../src/adapters/persistence/open-persistence.js'
import type { UsersService } from '../../src/users-service.js'
import { databases, type TestDatabase } from '../helpers/databases.js'
import { clientFor, freshClient, freshService } from '../helpers/fixtures.js'

/** SQLite, always the first of `databases`. */
const embedded = databases[0] as TestDatabase

async function exported (service: UsersService, appId: string): Promise<unknown[]> {
  const users = []
  for await (const user of service.exportUsers({ appId })) users.push(user)
  return users
}

// Every pair of databases, the same one on both sides included: SQLite to PostgreSQL is the
// move from the embedded default to production.
for (const from of databases) {
  for (const to of databases) {
    t.test(`${from.dialect} to ${to.dialect}`, async (t) => {
      let now = Date.now()
      const source = await freshClient(t, from, { clock: { now: () => now } })
      const { service } = source
      const other = await service.createApp({ name: 'other' })
      const revoked = await service.createApiKey({ appId: source.appId })
      t.ok(await service.revokeApiKey({ keyId: revoked.keyId }))
      t.equal((await source.createUser({ email: 'ada@example.com', user_id: 'ada', name: 'Ada' })).statusCode, 201)
      t.equal((await source.put('ada', { name: 'Ada' }, { 'idempotency-key': 'old' })).statusCode, 200)
      now += 25 * 60 * 60 * 1000
      const update = { name: 'Ada Lovelace', metadata: { plan: 'pro', nested: { list: [1, 2.5, 'ü'], yes: true } } }
      const first = await source.put('ada', update, { 'idempotency-key': 'k1' })
      t.equal(first.statusCode, 200)
      t.equal((await source.createUser({ email: 'bob@example.com', user_id: 'bob' })).statusCode, 201)
      await service.createUser({ appId: other.appId, email: 'ada@example.com', userId: 'ada' })

      const target = await to.fresh(t)
      t.same(await service.copyTo({ databaseUrl: target }), { apps: 2, keys: 3, users: 3, storedResponses: 1 }, 'not the answer that expired')

      const copy = await freshService(t, to, { databaseUrl: target })
      const app = await buildHttpApp({ service: copy })
      t.teardown(async () => await app.close())
      const client = clientFor(app, copy, source.appId, source.apiKey)
      t.same(await copy.listApps(), await service.listApps(), 'the apps')
      for (const { appId } of await service.listApps()) {
        t.same(await copy.listApiKeys({ appId }), await service.listApiKeys({ appId }), 'their keys, the revoked one revoked')
        t.same(await exported(copy, appId), await exported(service, appId), 'their users, klaim_ids, versions and times included')
      }
      const read = await client.request({ method: 'GET', url: '/users/ada' })
      t.equal(read.statusCode, 200, 'the key works on the copy')
      t.equal(read.headers.etag, first.headers.etag, 'and the ETag a client holds is still current')
      const retry = await client.put('ada', update, { 'idempotency-key': 'k1' })
      t.equal(retry.headers['idempotent-replayed'], 'true', 'a retry is answered from the stored answer')
      t.same(retry.json(), first.json())
      t.equal((await client.request({ method: 'GET', url: '/users/ada', headers: { authorization: `Bearer ${revoked.apiKey}` } })).statusCode, 401)

      await t.rejects(service.copyTo({ databaseUrl: target }), { constructor: CopyRefused, message: /has apps already/ }, 'a second copy into it')
      t.equal((await exported(copy, source.appId)).length, 2, 'which changed nothing')
    })
  }
}

for (const to of databases) {
  t.test(`a copy to ${to.dialect} that fails part way leaves the target as it was`, async (t) => {
    const service = await freshService(t, embedded)
    const { appId } = await service.createApp({ name: 'shop' })
    for (const userId of ['a', 'b', 'c']) await service.createUser({ appId, email: `${userId}@example.com`, userId })
    const target = await to.fresh(t)
    const persistence = await openPersistence({ databaseUrl: target })
    // The users' insert fails at 'b' (as a disk or a connection could), after the app and its key
    // were written in the same transaction.
    if (to.dialect === 'sqlite') {
      await sql`create trigger refuse before insert on users when new.user_id = 'b' begin select raise(abort, 'interrupted'); end`.execute(persistence.db)
    } else {
      await sql`create function refuse() returns trigger language plpgsql as $$ begin if new.user_id = 'b' then raise exception 'interrupted'; end if; return new; end $$`.execute(persistence.db)
      await sql`create trigger refuse before insert on users for each row execute function refuse()`.execute(persistence.db)
    }
    await t.rejects(service.copyTo({ databaseUrl: target }), /interrupted/)
    t.same(await persistence.apps.listApps(), [], 'no app, so a copy can run again')
    t.equal(Number((await sql<{ n: number | string }>`select count(*) as n from users`.execute(persistence.db)).rows[0]?.n), 0, 'no user')
    await persistence.close()
  })
}

t.test('a target that cannot be opened: refused, with the reason', async (t) => {
  const service = await freshService(t, embedded)
  await t.rejects(service.copyTo({ databaseUrl: 'postgres://klaim@127.0.0.1:1/none' }), { constructor: CopyRefused, message: /cannot open the target database \(.*ECONNREFUSED/ })
})

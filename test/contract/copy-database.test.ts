import { hostname } from 'node:os'
import t from 'tap'
import { buildHttpApp } from '../../src/adapters/http/app.js'
import { copyDatabase } from '../../src/adapters/persistence/copy-database.js'
import { CopyRefused } from '../../src/adapters/persistence/exported.js'
import type { CompiledQuery, DatabaseConnection, Driver, QueryResult } from 'kysely'
import { Kysely, SqliteAdapter, SqliteIntrospector, SqliteQueryCompiler, sql } from '../../src/adapters/persistence/kysely.js'
import type { DatabaseSchema } from '../../src/adapters/persistence/schema.js'
import { openPersistence, type Persistence } from '../../src/adapters/persistence/open-persistence.js'
import { announceServer, databaseNow, GONE_AFTER_MS } from '../../src/adapters/persistence/server-registry.js'
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
      if (to.dialect === 'postgres') {
        const stats = await openPersistence({ databaseUrl: target })
        const { rows } = await sql<{ reltuples: number }>`select reltuples from pg_class where relname = 'users'`.execute(stats.db)
        await stats.close()
        t.equal(Number(rows[0]?.reltuples), 3, 'its tables analyzed: the planner knows their sizes from the start')
      }

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

    t.test(`${from.dialect} to ${to.dialect}, of a database whose apps were all deleted: no first app on the copy either`, async (t) => {
      const service = await freshService(t, from)
      const { appId } = await service.createApp({ name: 'gone' })
      await service.deleteApp({ appId })
      const target = await to.fresh(t)
      t.same(await service.copyTo({ databaseUrl: target }), { apps: 0, keys: 0, users: 0, storedResponses: 0 })
      const copy = await freshService(t, to, { databaseUrl: target })
      t.equal(await copy.createFirstApp(), undefined, 'as on the source')
      t.same(await copy.listApps(), [])
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

/** The servers' rows of the database at `persistence`, as `[pid, seen_at]`. */
async function serverRows (persistence: Persistence): Promise<Array<[number, number]>> {
  const rows = await persistence.db.selectFrom('servers').select(['pid', 'seen_at']).orderBy('seen_at').execute()
  return rows.map((r) => [r.pid, Number(r.seen_at)])
}

const thisServer = `${hostname()} pid ${process.pid}`
const escaped = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

for (const from of databases) {
  t.test(`a copy from ${from.dialect} refuses while a server runs on it, and goes ahead once none has been seen for 30 s`, async (t) => {
    const url = await from.freshShared(t)
    const service = await freshService(t, from, { databaseUrl: url })
    const { appId } = await service.createApp({ name: 'shop' })
    await service.createUser({ appId, email: 'a@example.com', userId: 'a' })
    const source = await openPersistence({ databaseUrl: url, migrate: false })
    t.teardown(async () => await source.close())
    const target = await embedded.fresh(t)

    const first = await service.announceServer()
    const second = await service.announceServer()
    t.same((await serverRows(source)).map(([pid]) => pid), [process.pid, process.pid], 'a row for each')
    await t.rejects(service.copyTo({ databaseUrl: target }), {
      constructor: CopyRefused,
      message: new RegExp(`^2 servers are running on the source database \\(${escaped(thisServer)}, seen \\d+ s ago; ${escaped(thisServer)}, seen \\d+ s ago\\): stop them first$`)
    })
    await first.stop()
    await t.rejects(service.copyTo({ databaseUrl: target }), { constructor: CopyRefused, message: /^a server is running on the source database \(.+\): stop it first$/ })
    const copied = await openPersistence({ databaseUrl: target })
    t.same(await copied.apps.listApps(), [], 'nothing copied')
    await copied.close()
    await second.stop()
    t.same(await serverRows(source), [], 'a server that stops removes its row')

    // A server that ended without removing its row (a crash): its last heartbeat 15 s ago still
    // counts, 31 s ago no longer, by the database's clock.
    const now = await databaseNow(source.db, source.location.dialect)
    const row = { host: 'crashed', pid: 1, started_at: now - 60_000 }
    await source.db.insertInto('servers').values({ ...row, id: 'a', seen_at: now - GONE_AFTER_MS + 15_000 }).execute()
    await t.rejects(service.copyTo({ databaseUrl: target }), { constructor: CopyRefused, message: /^a server is running on the source database \(crashed pid 1, seen (1[5-9]|2[0-9]) s ago\)/ })
    await source.db.updateTable('servers').set({ seen_at: now - GONE_AFTER_MS - 1000 }).execute()
    t.same(await service.copyTo({ databaseUrl: target }), { apps: 1, keys: 1, users: 1, storedResponses: 0 }, 'into the target the refusals left empty')
  })

  t.test(`a server that starts on ${from.dialect} while a copy reads it: the copy is refused at its end, the target left as it was`, async (t) => {
    const url = await from.freshShared(t)
    const service = await freshService(t, from, { databaseUrl: url })
    const { appId } = await service.createApp({ name: 'shop' })
    await service.createUser({ appId, email: 'a@example.com', userId: 'a' })
    const source = await openPersistence({ databaseUrl: url })
    t.teardown(async () => await source.close())
    const target = await openPersistence({ databaseUrl: await embedded.fresh(t) })
    t.teardown(async () => await target.close())
    let started: { stop: () => Promise<void> } | undefined
    // The server starts once the copy's snapshot has begun: its writes could not be in the copy.
    const startsMidway: Persistence = {
      ...source,
      openSnapshot: async () => {
        const snapshot = await source.openSnapshot()
        started = await announceServer(source.db, source.location.dialect)
        return snapshot
      }
    }
    await t.rejects(copyDatabase(startsMidway, target, Date.now()), {
      constructor: CopyRefused,
      message: new RegExp(`^a server started on the source database while copying \\(${escaped(thisServer)}, seen \\d+ s ago\\): stop it, and copy again$`)
    })
    t.same(await target.apps.listApps(), [], 'no app copied')
    t.equal(Number((await sql<{ n: number | string }>`select count(*) as n from users`.execute(target.db)).rows[0]?.n), 0, 'no user')
    await started?.stop()
    t.same(await copyDatabase(source, target, Date.now()), { apps: 1, keys: 1, users: 1, storedResponses: 0 }, 'once it stopped')
  })
}

t.test('a server\'s heartbeats: its row comes back if it went, none after stop(); a failure is told', async (t) => {
  const url = await embedded.fresh(t)
  const persistence = await openPersistence({ databaseUrl: url })
  t.teardown(async () => await persistence.close())
  const errors: Error[] = []
  const now = await databaseNow(persistence.db, 'sqlite')
  const row = { host: 'h', pid: 1, started_at: 0 }
  await persistence.db.insertInto('servers').values([{ ...row, id: 'gone', seen_at: now - GONE_AFTER_MS - 1000 }, { ...row, id: 'quiet', seen_at: now - 20_000 }]).execute()
  const server = await announceServer(persistence.db, 'sqlite', { heartbeatMs: 1, onError: (error) => errors.push(error) })
  t.same((await persistence.db.selectFrom('servers').select('id').where('pid', '=', 1).execute()).map((r) => r.id), ['quiet'], 'a start clears the rows of servers gone, not of one still counted')
  await persistence.db.deleteFrom('servers').where('pid', '=', 1).execute()
  const [seen] = await serverRows(persistence)
  t.equal(seen?.[0], process.pid, 'written at once')
  await persistence.db.deleteFrom('servers').execute()
  // The timer's heartbeats write it again.
  while ((await serverRows(persistence)).length === 0) await new Promise((resolve) => setImmediate(resolve))
  t.ok(((await serverRows(persistence))[0]?.[1] ?? 0) >= (seen?.[1] ?? Infinity), 'seen again, no earlier')
  await server.stop()
  t.same(await serverRows(persistence), [], 'no row after stop()')
  await server.beat()
  t.same(await serverRows(persistence), [], 'nor after a heartbeat called then')
  t.same(errors, [])

  const failing = await announceServer(persistence.db, 'sqlite', { heartbeatMs: 60_000, onError: (error) => errors.push(error) })
  await sql`drop table servers`.execute(persistence.db)
  await failing.beat()
  t.match(errors, [{ message: /no such table: servers/ }], 'a heartbeat that fails is told, not thrown')
  await t.rejects(failing.stop(), /no such table/)
})

t.test('stop() waits for a heartbeat on its way before it deletes the row, which would else come back', async (t) => {
  // A stand-in database that runs each statement on a connection of its own, as a pool does, and
  // holds the heartbeat's upsert at a gate: the order the statements reach it is what counts.
  const reached: string[] = []
  let gate: Promise<void> = Promise.resolve()
  const connection: DatabaseConnection = {
    async executeQuery<R> ({ sql: text }: CompiledQuery): Promise<QueryResult<R>> {
      if (text.startsWith('insert')) await gate
      reached.push(text.split(' ')[0] ?? '')
      return { rows: [] }
    },
    streamQuery: () => { throw new Error('not used') }
  }
  const driver: Driver = {
    init: async () => {},
    acquireConnection: async () => connection,
    beginTransaction: async () => {},
    commitTransaction: async () => {},
    rollbackTransaction: async () => {},
    releaseConnection: async () => {},
    destroy: async () => {}
  }
  const db = new Kysely<DatabaseSchema>({
    dialect: {
      createAdapter: () => new SqliteAdapter(),
      createDriver: () => driver,
      createQueryCompiler: () => new SqliteQueryCompiler(),
      createIntrospector: (kysely) => new SqliteIntrospector(kysely)
    }
  })
  const server = await announceServer(db, 'sqlite', { heartbeatMs: 60_000 })
  t.same(reached, ['delete', 'insert'], 'the gone servers\' rows cleared, its own written')
  let open = (): void => {}
  gate = new Promise((resolve) => { open = resolve })
  const beat = server.beat()
  const stopped = server.stop()
  await new Promise((resolve) => setImmediate(resolve))
  t.same(reached, ['delete', 'insert'], 'stop() has not deleted while the heartbeat waits')
  open()
  await Promise.all([beat, stopped])
  t.same(reached, ['delete', 'insert', 'insert', 'delete'], 'the heartbeat\'s upsert, then the delete')
})

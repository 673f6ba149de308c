import assert from 'node:assert'
import BetterSqlite3 from 'better-sqlite3'
import t, { type Test } from 'tap'
import { isUnavailable } from '../../src/adapters/persistence/database-errors.js'
import { CompiledQuery, sql } from '../../src/adapters/persistence/kysely.js'
import { openPersistence } from '../../src/adapters/persistence/open-persistence.js'
import { databases } from '../helpers/databases.js'
import { freshClient } from '../helpers/fixtures.js'
import { sampleUser } from '../helpers/users.js'

const sqlite = databases.find((db) => db.dialect === 'sqlite') ?? assert.fail('SQLite is always among the test databases')

/** Another connection to the file, as another process (the CLI, a second server) would hold. */
function rivalConnection (t: Test, databaseUrl: string): BetterSqlite3.Database {
  const rival = new BetterSqlite3(databaseUrl.slice('sqlite:'.length), { timeout: 0 })
  t.teardown(() => rival.close())
  return rival
}

t.test('a write that finds another process holding the write lock waits for it without stalling the process', async (t) => {
  const databaseUrl = await sqlite.freshShared(t)
  const persistence = await openPersistence({ databaseUrl, lockTimeoutMs: 0 }) // 0: no limit
  t.teardown(async () => await persistence.close())
  const { apps, users } = persistence
  await apps.insertApp({ appId: 'app', name: 'app', createdAt: 1 })
  const ada = sampleUser()
  await users.insert(ada)
  const rival = rivalConnection(t, databaseUrl)

  rival.exec('begin immediate')
  // The UPDATE meets the lock within this call: with SQLite's own busy timeout it would sleep
  // right here, and the whole event loop with it.
  const update = users.update({ ...ada, name: 'Ada', updatedAt: 2, version: 2 }, ada)
  let settled = false
  update.then(() => { settled = true }, () => { settled = true })
  t.match(await users.findByUserId('app', 'ada'), { name: null }, 'a read is answered meanwhile (WAL mode never makes one wait)')
  t.equal(settled, false, 'the update still waits for the lock')

  rival.exec('commit')
  await update
  t.match(await users.findByUserId('app', 'ada'), { name: 'Ada', version: 2 }, 'the lock released, the update lands')
})

t.test('inside a transaction, a statement that meets the lock fails at once, for the transaction to be run again', async (t) => {
  const databaseUrl = await sqlite.freshShared(t)
  const persistence = await openPersistence({ databaseUrl, lockTimeoutMs: 60_000 })
  t.teardown(async () => await persistence.close())
  const rival = rivalConnection(t, databaseUrl)

  await persistence.db.connection().execute(async (connection) => {
    // A deferred transaction: its snapshot is taken by the read, before the rival writes.
    await connection.executeQuery(CompiledQuery.raw('begin'))
    await connection.executeQuery(CompiledQuery.raw('select count(*) from apps'))
    rival.exec('begin immediate')
    await t.rejects(connection.executeQuery(CompiledQuery.raw("insert into apps (id, name, created_at) values ('a', 'a', 1)")), { code: /^SQLITE_BUSY/ },
      'run again alone, the statement would leave the transaction it belongs to')
    await connection.executeQuery(CompiledQuery.raw('rollback'))
  })
  rival.exec('rollback')
})

t.test('a write lock nobody releases fails the request with a 503 after the lock timeout', async (t) => {
  const databaseUrl = await sqlite.freshShared(t)
  const client = await freshClient(t, sqlite, { databaseUrl, lockTimeoutMs: 200 })
  const rival = rivalConnection(t, databaseUrl)
  await client.createUser({ email: 'ada@example.com', user_id: 'ada' })

  rival.exec('begin immediate')
  for (const headers of [{}, { 'idempotency-key': 'k1' }] as Array<Record<string, string>>) {
    const put = await client.put('ada', { name: 'Ada' }, headers)
    t.equal(put.statusCode, 503, `waits ${'idempotency-key' in headers ? 'at the transaction\'s BEGIN' : 'in the UPDATE'}, then gives up`)
    t.same(put.json(), { message: 'The database is unavailable. Try again shortly.', code: 'unavailable' })
  }
  const created = await client.createUser({ email: 'bob@example.com', user_id: 'bob' })
  t.equal(created.statusCode, 503, 'a create gives up the same way')

  const inProcess = await client.service.updateUserProfile({ appId: client.appId, userId: 'ada', changes: { name: 'Ada' } }).catch((error: unknown) => error)
  t.match(inProcess, { code: 'SQLITE_LOCK_TIMEOUT', message: /database is locked/ }, 'in-process, the error says why')
  t.ok(isUnavailable(inProcess), 'and counts as the database being unavailable')

  rival.exec('rollback')
  const put = await client.put('ada', { name: 'Ada' }, { 'idempotency-key': 'k1' })
  t.equal(put.statusCode, 200, 'the lock released, the same request succeeds (a 503 keeps no idempotency answer)')
})

t.test('a full disk fails the write as unavailable (a 503), and stores nothing of it', async (t) => {
  // In memory: one connection, so the page limit set below binds the write (a file database
  // runs it on the SQLite thread's connection, which this pragma does not reach).
  const persistence = await openPersistence({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await persistence.close())
  const { apps, users, db } = persistence
  await apps.insertApp({ appId: 'app', name: 'app', createdAt: 1 })
  const ada = sampleUser()
  await users.insert(ada)
  // SQLite's page limit fails a write exactly as a full disk does (SQLITE_FULL).
  const { rows } = await sql<{ pages: number }>`select page_count as pages from pragma_page_count()`.execute(db)
  await sql.raw(`pragma max_page_count = ${rows[0]?.pages ?? 0}`).execute(db)

  const metadata = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, 'x'.repeat(190)]))
  const full = await users.update({ ...ada, metadata, updatedAt: 2, version: 2 }, ada).catch((error: unknown) => error)
  t.match(full, { code: 'SQLITE_FULL' })
  t.ok(isUnavailable(full), 'answered as the database being unavailable, not as a fault of the service')
  t.match(await users.findByUserId('app', 'ada'), { metadata: {}, version: 1 }, 'nothing of the update was stored')
})

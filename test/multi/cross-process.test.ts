import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { buildHttpApp } from '../../src/adapters/http/app.js'
import { ensureFirstApp, FIRST_KEY_FILE } from '../../src/first-start.js'
import { openUsersService } from '../../src/users-service.js'
import { eachDatabase } from '../helpers/databases.js'
import { tally } from '../helpers/users.js'
import { clientFor, type TestClient } from '../helpers/fixtures.js'

// Two servers, each with its own connections (a pool on PostgreSQL, a connection to the same
// file on SQLite), on one database: what one process guarantees must hold across processes.
eachDatabase(t, (t, db) => {
  async function twoServers (t: Parameters<Parameters<typeof eachDatabase>[1]>[0]): Promise<[TestClient, TestClient]> {
    const url = await db.freshShared(t)
    const services = [await openUsersService({ databaseUrl: url, poolMax: 5 }), await openUsersService({ databaseUrl: url, poolMax: 5 })] as const
    const { appId, apiKey } = await services[0].createApp({ name: 'shared' })
    const clients = await Promise.all(services.map(async (service) => {
      const app = await buildHttpApp({ service })
      t.teardown(async () => { await app.close(); await service.close() })
      return clientFor(app, service, appId, apiKey)
    }))
    return clients as [TestClient, TestClient]
  }
  const pick = (clients: [TestClient, TestClient], i: number): TestClient => clients[i % 2] as TestClient

  t.test('racing renames across servers: exactly one winner', async (t) => {
    const clients = await twoServers(t)
    for (let i = 0; i < 20; i++) await pick(clients, i).createUser({ email: `u${i}@example.com`, user_id: `u${i}` })
    const responses = await Promise.all(Array.from({ length: 20 }, async (_, i) => await pick(clients, i).put(`u${i}`, { user_id: 'winner' })))
    t.same(tally(responses.map((r) => r.statusCode)), { 200: 1, 409: 19 })
  })

  t.test('racing email changes across servers: exactly one winner', async (t) => {
    const clients = await twoServers(t)
    for (let i = 0; i < 20; i++) await pick(clients, i).createUser({ email: `u${i}@example.com`, user_id: `u${i}` })
    const responses = await Promise.all(Array.from({ length: 20 }, async (_, i) => await pick(clients, i).put(`u${i}`, { email: 'same@example.com' })))
    t.same(tally(responses.map((r) => r.statusCode)), { 200: 1, 409: 19 })
  })

  t.test('concurrent metadata merges across servers: all 200, no key lost', async (t) => {
    const clients = await twoServers(t)
    await clients[0].createUser({ email: 'ada@example.com', user_id: 'ada' })
    const responses = await Promise.all(Array.from({ length: 25 }, async (_, i) => await pick(clients, i).put('ada', { metadata: { [`k${i}`]: i } })))
    t.same(tally(responses.map((r) => r.statusCode)), { 200: 25 })
    const final = await clients[1].request({ method: 'GET', url: '/users/ada' })
    t.equal(Object.keys(final.json().metadata).length, 25)
    t.match(final.headers.etag, /\.26"$/)
  })

  t.test('two writers on two servers holding one ETag: exactly one wins', async (t) => {
    const clients = await twoServers(t)
    const etag = (await clients[0].createUser({ email: 'ada@example.com', user_id: 'ada' })).headers.etag as string
    const responses = await Promise.all(Array.from({ length: 10 }, async (_, i) => await pick(clients, i).put('ada', { name: `w${i}` }, { 'if-match': etag })))
    t.same(tally(responses.map((r) => r.statusCode)), { 200: 1, 412: 9 })
  })

  t.test('a key revoked through one server is refused by the other at once', async (t) => {
    const clients = await twoServers(t)
    const extra = await clients[0].service.createApiKey({ appId: clients[0].appId })
    const read = async () => await clients[1].request({ method: 'GET', url: '/users/x', headers: { authorization: `Bearer ${extra.apiKey}` } })
    t.equal((await read()).statusCode, 404)
    await clients[0].service.revokeApiKey({ keyId: extra.keyId })
    t.equal((await read()).statusCode, 401)
  })

  t.test('servers starting at once on an empty database create one first app between them', async (t) => {
    const url = await db.freshShared(t)
    const open = async () => await openUsersService({ databaseUrl: url, poolMax: 5 })
    const services = [await open(), await open(), await open()] as const
    t.teardown(async () => { for (const service of services) await service.close() })
    const folders = services.map(() => mkdtempSync(join(tmpdir(), 'klaim-first-')))
    t.teardown(() => { for (const folder of folders) rmSync(folder, { recursive: true, force: true }) })
    // Each reads "no app" before any writes one, as processes starting together do.
    const created = await Promise.all(services.map(async (service) => await Promise.all([1, 2].map(async () => await service.createFirstApp()))))
    const winners = created.flat().filter((app) => app !== undefined)
    t.equal(winners.length, 1, 'one app created')
    t.same((await services[0].listApps()).map((app) => app.appId), [winners[0]?.appId], 'and only that one stored')
    t.ok(await services[2].authenticate(winners[0]?.apiKey ?? ''), 'with its key')
    const starts = await Promise.all(services.map(async (service, i) => await ensureFirstApp(service, folders[i] as string)))
    t.same(starts, [{ noApp: false }, { noApp: false }, { noApp: false }], 'a later start writes no key file')
  })

  t.test('servers starting at once on an empty database with one data folder: one key file, no other', async (t) => {
    const url = await db.freshShared(t)
    const services = await Promise.all([1, 2, 3].map(async () => await openUsersService({ databaseUrl: url, poolMax: 5 })))
    t.teardown(async () => { for (const service of services) await service.close() })
    const folder = mkdtempSync(join(tmpdir(), 'klaim-first-'))
    t.teardown(() => rmSync(folder, { recursive: true, force: true }))
    const starts = await Promise.all(services.map(async (service) => await ensureFirstApp(service, folder)))
    t.same(starts.filter((start) => start.keyFile !== undefined), [{ keyFile: join(folder, FIRST_KEY_FILE), noApp: false }], 'one wrote it')
    t.same(readdirSync(folder), [FIRST_KEY_FILE], 'the others left nothing behind')
    t.ok(await services[1]?.authenticate(readFileSync(join(folder, FIRST_KEY_FILE), 'utf8').trim()), 'and its key is the app\'s')
  })
})

import t, { type Test } from 'tap'
import { buildHttpApp } from '../../src/adapters/http/app.js'
import { requestFingerprint } from '../../src/adapters/http/idempotent-writes.js'
import { openPersistence } from '../../src/adapters/persistence/open-persistence.js'
import { openUsersService } from '../../src/users-service.js'
import { eachDatabase, type TestDatabase } from '../helpers/databases.js'
import { clientFor, freshClient } from '../helpers/fixtures.js'

/** A client, plus the persistence of the same database, to stage what a dying request leaves. */
async function sharedClient (t: Test, db: TestDatabase) {
  const url = await db.freshShared(t)
  const service = await openUsersService({ databaseUrl: url })
  const persistence = await openPersistence({ databaseUrl: url })
  const app = await buildHttpApp({ service })
  t.teardown(async () => { await app.close(); await service.close(); await persistence.close() })
  const { appId, apiKey } = await service.createApp({ name: 'app' })
  const keyId = (await service.authenticate(apiKey))?.keyId ?? ''
  return { client: clientFor(app, service, appId, apiKey), persistence, keyId }
}

eachDatabase(t, (t, db) => {
  t.test('a retried update replays its stored response, and runs once', async (t) => {
    const client = await freshClient(t, db)
    await client.createUser({ email: 'ada@example.com', user_id: 'ada' })
    const headers = { 'idempotency-key': 'update-1' }
    const first = await client.put('ada', { name: 'Ada', metadata: { n: 1 } }, headers)
    t.equal(first.statusCode, 200)
    t.equal(first.headers['idempotent-replayed'], undefined)
    const again = await client.put('ada', { metadata: { n: 1 }, name: 'Ada' }, headers)
    t.equal(again.statusCode, 200)
    t.equal(again.headers['idempotent-replayed'], 'true')
    t.equal(again.body, first.body)
    t.equal(again.headers.etag, first.headers.etag)
    t.equal(again.headers['content-type'], 'application/json; charset=utf-8')
    t.equal(first.headers['cache-control'], 'private, no-cache')
    t.equal(again.headers['cache-control'], 'private, no-cache', 'a replay carries a user too')
    t.match((await client.request({ method: 'GET', url: '/users/ada' })).headers.etag, /\.2"$/, 'changed once')
  })

  t.test('a retried rename gets its 200, not a 404', async (t) => {
    const client = await freshClient(t, db)
    await client.createUser({ email: 'ada@example.com', user_id: 'ada' })
    const first = await client.put('ada', { user_id: 'lovelace' }, { 'idempotency-key': 'rename' })
    const retry = await client.put('ada', { user_id: 'lovelace' }, { 'idempotency-key': 'rename' })
    t.equal(first.statusCode, 200)
    t.equal(retry.statusCode, 200)
    t.equal(retry.json().user_id, 'lovelace')
    t.equal((await client.put('ada', { user_id: 'lovelace' })).statusCode, 404, 'without the key it is a new request')
  })

  t.test('a retried create replays 201 with Location and ETag; no second user', async (t) => {
    const client = await freshClient(t, db)
    const send = async () => await client.request({ method: 'POST', url: '/users', payload: { email: 'ada@example.com' }, headers: { 'idempotency-key': 'create' } })
    const first = await send()
    const retry = await send()
    t.equal(first.statusCode, 201)
    t.equal(retry.statusCode, 201)
    t.equal(retry.headers['idempotent-replayed'], 'true')
    t.equal(retry.headers.location, first.headers.location)
    t.equal(retry.headers.etag, first.headers.etag)
    t.equal(retry.body, first.body)
    t.equal(retry.headers['cache-control'], 'private, no-cache')
  })

  t.test('the same key for a different request is a 422', async (t) => {
    const client = await freshClient(t, db)
    await client.createUser({ email: 'ada@example.com', user_id: 'ada' })
    await client.createUser({ email: 'bob@example.com', user_id: 'bob' })
    const key = { 'idempotency-key': 'k' }
    await client.put('ada', { name: 'A' }, key)
    const reused = { code: 'idempotency_key_reused', message: 'This Idempotency-Key was already used with a different request.' }
    for (const res of [
      await client.put('ada', { name: 'B' }, key),
      await client.put('bob', { name: 'A' }, key),
      await client.put('ada', { name: 'A' }, { ...key, 'if-match': '*' }),
      await client.put('ada', { name: 'A' }, { ...key, 'if-none-match': '"x"' }),
      await client.request({ method: 'PATCH', url: '/users/ada', payload: { name: 'A' }, headers: key }),
      await client.request({ method: 'POST', url: '/users', payload: { email: 'new@example.com' }, headers: key })
    ]) {
      t.equal(res.statusCode, 422)
      t.same(res.json(), reused)
    }
  })

  t.test('answers from the idempotency step on are stored: 404, 409, 412, 400 on merged limits', async (t) => {
    const client = await freshClient(t, db)
    await client.createUser({ email: 'bob@example.com', user_id: 'bob' })
    const notFound = await client.put('ada', { name: 'A' }, { 'idempotency-key': 'nf' })
    t.equal(notFound.statusCode, 404)
    await client.createUser({ email: 'ada@example.com', user_id: 'ada' })
    const replay = await client.put('ada', { name: 'A' }, { 'idempotency-key': 'nf' })
    t.equal(replay.statusCode, 404, 'replayed, although the user exists now')
    t.equal(replay.headers['idempotent-replayed'], 'true')
    t.equal(replay.headers['cache-control'], undefined, 'a stored error carries no user')
    t.equal((await client.put('ada', { user_id: 'bob' }, { 'idempotency-key': 'c' })).statusCode, 409)
    t.equal((await client.put('ada', { user_id: 'bob' }, { 'idempotency-key': 'c' })).headers['idempotent-replayed'], 'true')
    const big = { metadata: { k: 'x'.repeat(9000) } }
    t.equal((await client.put('ada', big, { 'idempotency-key': 'l' })).statusCode, 400)
    t.equal((await client.put('ada', big, { 'idempotency-key': 'l' })).headers['idempotent-replayed'], 'true')
    const schema = await client.put('ada', { name: 1 }, { 'idempotency-key': 's' })
    t.equal(schema.statusCode, 400)
    t.equal((await client.put('ada', { name: 'S' }, { 'idempotency-key': 's' })).statusCode, 200, 'a schema 400 is not stored: the key is still free')
  })

  t.test('keys are scoped to the API key; a malformed key is a 400', async (t) => {
    const client = await freshClient(t, db)
    await client.createUser({ email: 'ada@example.com', user_id: 'ada' })
    const other = await client.service.createApiKey({ appId: client.appId })
    await client.put('ada', { name: 'A' }, { 'idempotency-key': 'shared' })
    const res = await client.put('ada', { name: 'B' }, { 'idempotency-key': 'shared', authorization: `Bearer ${other.apiKey}` })
    t.equal(res.statusCode, 200, 'another API key has its own keys')
    t.equal(res.json().name, 'B')
    for (const bad of ['', 'x'.repeat(256), 'tab\there', 'ü']) {
      const r = await client.put('ada', { name: 'C' }, { 'idempotency-key': bad })
      t.equal(r.statusCode, 400, JSON.stringify(bad))
      t.same(r.json().errors, [{ path: '/header/idempotency-key', message: 'must be 1 to 255 printable ASCII characters' }])
    }
    // Node joins repeated fields into one value ("a1, b1"), itself a valid key: which one was meant?
    const twice = await client.request({ method: 'PUT', url: '/users/ada', payload: { name: 'D' }, headers: { 'idempotency-key': ['a1', 'b1'] } })
    t.equal(twice.statusCode, 400, 'the header sent twice')
    t.same(twice.json().errors, [{ path: '/header/idempotency-key', message: 'must be sent once' }])
    t.equal((await client.put('ada', { name: 'D' }, { 'idempotency-key': 'a1, b1' })).statusCode, 200, 'the joined value, sent once, is a key like any other')
    t.equal((await client.request({ method: 'GET', url: '/users/ada' })).json().name, 'D')
  })

  t.test('a key whose first request still runs is a 409; one that died is taken over after 60 s', async (t) => {
    const { client, persistence, keyId } = await sharedClient(t, db)
    await client.createUser({ email: 'ada@example.com', user_id: 'ada' })
    const body = { name: 'Ada' }
    const fingerprint = requestFingerprint('PUT', '/users/ada', undefined, body)
    const now = Date.now()
    await persistence.idempotency.claim(keyId, 'running', { fingerprint, response: undefined, lockedUntil: now + 60_000, expiresAt: now + 86_400_000 })
    const busy = await client.put('ada', body, { 'idempotency-key': 'running' })
    t.equal(busy.statusCode, 409)
    t.same(busy.json(), { message: 'A request with this Idempotency-Key is still in progress.', code: 'idempotency_in_progress' })
    await persistence.idempotency.claim(keyId, 'died', { fingerprint, response: undefined, lockedUntil: now - 1, expiresAt: now + 86_400_000 })
    const taken = await client.put('ada', body, { 'idempotency-key': 'died' })
    t.equal(taken.statusCode, 200)
    t.equal((await client.put('ada', body, { 'idempotency-key': 'died' })).headers['idempotent-replayed'], 'true')
    await persistence.idempotency.claim(keyId, 'old', { fingerprint: 'another request', response: { status: 200, body: '{}', headers: {} }, lockedUntil: now - 1, expiresAt: now - 1 })
    t.equal((await client.put('ada', body, { 'idempotency-key': 'old' })).statusCode, 200, 'past 24 hours a key is free again')
    t.equal(await persistence.idempotency.purgeExpired(now + 2 * 86_400_000), 3, 'expired keys are purged')
  })
})

t.test('rate limits: per API key with headers, failed authentications per IP, never /health', async (t) => {
  const service = await openUsersService({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await service.close())
  const app = await buildHttpApp({ service, rateLimitPerMinute: 3, authFailuresPerMinute: 2 })
  t.teardown(async () => await app.close())
  const { apiKey } = await service.createApp({ name: 'app' })
  const other = await service.createApp({ name: 'other' })
  const get = async (key: string, ip = '10.0.0.1') => await app.inject({ method: 'GET', url: '/users/x', headers: { authorization: `Bearer ${key}` }, remoteAddress: ip })
  const first = await get(apiKey)
  t.equal(first.statusCode, 404)
  t.equal(first.headers['ratelimit-limit'], '3')
  t.equal(first.headers['ratelimit-remaining'], '2')
  t.match(first.headers['ratelimit-reset'], /^\d+$/)
  await get(apiKey)
  await get(apiKey)
  const limited = await get(apiKey)
  t.equal(limited.statusCode, 429)
  t.same(limited.json(), { message: 'Too many requests. Retry after the number of seconds in Retry-After.', code: 'rate_limited' })
  t.match(limited.headers['retry-after'], /^\d+$/)
  t.equal(limited.headers['ratelimit-remaining'], '0')
  t.equal(limited.headers['content-type'], 'application/json; charset=utf-8')
  t.equal((await get(other.apiKey)).statusCode, 404, 'another key has its own budget')
  t.equal((await get('klaim_sk_bad', '10.0.0.2')).statusCode, 401)
  t.equal((await get('klaim_sk_bad', '10.0.0.2')).statusCode, 401)
  t.equal((await get('klaim_sk_bad', '10.0.0.2')).statusCode, 429, 'too many failed authentications from one IP')
  t.equal((await get('klaim_sk_bad', '10.0.0.3')).statusCode, 401, 'another IP is not affected')
  for (let i = 0; i < 5; i++) t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200)
  const forwarded = async (target: typeof app, clientIp: string) => await target.inject({ method: 'GET', url: '/users/x', headers: { authorization: 'Bearer klaim_sk_bad', 'x-forwarded-for': clientIp }, remoteAddress: '10.9.9.9' })
  t.equal((await forwarded(app, '203.0.113.1')).statusCode, 401)
  t.equal((await forwarded(app, '203.0.113.2')).statusCode, 401)
  t.equal((await forwarded(app, '203.0.113.3')).statusCode, 429, 'X-Forwarded-For is not believed from an untrusted peer')
  const proxied = await buildHttpApp({ service, authFailuresPerMinute: 2, trustProxy: ['10.9.9.0/24'] })
  t.teardown(async () => await proxied.close())
  for (let i = 0; i < 2; i++) t.equal((await forwarded(proxied, '203.0.113.1')).statusCode, 401)
  t.equal((await forwarded(proxied, '203.0.113.1')).statusCode, 429, 'behind a trusted proxy, one client\'s failures…')
  t.equal((await forwarded(proxied, '203.0.113.2')).statusCode, 401, '…do not limit another client of the same proxy')
  const unlimited = await buildHttpApp({ service, rateLimitPerMinute: 0 })
  t.teardown(async () => await unlimited.close())
  for (let i = 0; i < 5; i++) t.equal((await unlimited.inject({ method: 'GET', url: '/users/x', headers: { authorization: `Bearer ${apiKey}` } })).statusCode, 404)
})

eachDatabase(t, (t, db) => {
  t.test('rate limits in the database: servers on one database share each key\'s and each IP\'s count', async (t) => {
    const url = await db.freshShared(t)
    // Two services on one database, as two server processes: each its own connections.
    const services = [await openUsersService({ databaseUrl: url }), await openUsersService({ databaseUrl: url })]
    t.teardown(async () => { for (const s of services) await s.close() })
    // The window this test counts in, pinned so that a minute turning mid-test cannot reset it.
    const now = Date.now()
    const window = now - (now % 60_000)
    const apps = await Promise.all(services.map(async (service) => {
      const counter = service.rateCounter
      const rateCounter = { hit: async (bucket: string) => await counter.hit(bucket, window), purge: async (before: number) => await counter.purge(before) }
      const app = await buildHttpApp({ service, rateLimitPerMinute: 3, authFailuresPerMinute: 2, rateCounter })
      t.teardown(async () => await app.close())
      return app
    }))
    const { apiKey } = await services[0]!.createApp({ name: 'app' })
    const get = async (i: number, key: string, ip = '10.0.0.1') => await apps[i]!.inject({ method: 'GET', url: '/users/x', headers: { authorization: `Bearer ${key}` }, remoteAddress: ip })
    const first = await get(0, apiKey)
    t.equal(first.statusCode, 404)
    t.same([first.headers['ratelimit-limit'], first.headers['ratelimit-remaining']], ['3', '2'])
    t.equal((await get(1, apiKey)).headers['ratelimit-remaining'], '1', 'the other server counts on')
    t.equal((await get(0, apiKey)).statusCode, 404)
    const limited = await get(1, apiKey)
    t.equal(limited.statusCode, 429, 'the fourth request, whichever server takes it')
    t.same(limited.json(), { message: 'Too many requests. Retry after the number of seconds in Retry-After.', code: 'rate_limited' })
    t.ok(Number(limited.headers['retry-after']) >= 0 && Number(limited.headers['retry-after']) <= 60, 'Retry-After: the seconds left in the window')
    t.equal((await get(0, apiKey)).statusCode, 429)
    t.equal((await get(0, 'klaim_sk_bad')).statusCode, 401)
    t.equal((await get(1, 'klaim_sk_bad')).statusCode, 401)
    t.equal((await get(0, 'klaim_sk_bad')).statusCode, 429, 'failed authentications from one IP, on either server')
    t.equal((await get(1, 'klaim_sk_bad', '10.0.0.2')).statusCode, 401, 'another IP is not affected')

    // A database that cannot count: 503, as when it cannot check the key.
    const down = { hit: async () => { throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) }, purge: async () => 0 }
    const cut = await buildHttpApp({ service: services[0]!, rateLimitPerMinute: 3, rateCounter: down })
    t.teardown(async () => await cut.close())
    const unavailable = await cut.inject({ method: 'GET', url: '/users/x', headers: { authorization: `Bearer ${apiKey}` } })
    t.equal(unavailable.statusCode, 503)
    t.equal(unavailable.json().code, 'unavailable')
  })
})

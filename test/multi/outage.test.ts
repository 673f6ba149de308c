import t from 'tap'
import { findPostgresBin, startCluster } from '../../scripts/pg-cluster.mjs'
import { buildHttpApp } from '../../src/adapters/http/app.js'
import { openUsersService } from '../../src/users-service.js'

// A cluster of its own: tap runs files in parallel, so the shared one is never stopped.
const bin = findPostgresBin()
if (bin === undefined) {
  if (process.env.REQUIRE_POSTGRES === '1') throw new Error('REQUIRE_POSTGRES=1 but no PostgreSQL server binaries')
  t.comment('!!! PostgreSQL server binaries not found: the outage test is SKIPPED')
  t.pass('skipped: no PostgreSQL')
} else {
  t.test('database down: 503 everywhere but /health, no crash; back up: recovers by itself', async (t) => {
    const cluster = await startCluster({ bin, inMemory: true })
    t.teardown(async () => await cluster.stop())
    const poolErrors: Error[] = []
    const service = await openUsersService({ databaseUrl: cluster.url, poolMax: 3, onPoolError: (e) => poolErrors.push(e) })
    t.teardown(async () => await service.close())
    const app = await buildHttpApp({ service })
    t.teardown(async () => await app.close())
    const { apiKey } = await service.createApp({ name: 'app' })
    const headers = { authorization: `Bearer ${apiKey}` }
    await app.inject({ method: 'POST', url: '/users', headers, payload: { email: 'ada@example.com', user_id: 'ada' } })
    // Warm several pooled connections, so the outage also hits idle clients.
    await Promise.all([1, 2, 3].map(async () => await app.inject({ method: 'GET', url: '/users/ada', headers })))

    await cluster.pause()
    const unavailable = { message: 'The database is unavailable. Try again shortly.', code: 'unavailable' }
    const ready = await app.inject({ method: 'GET', url: '/ready' })
    t.equal(ready.statusCode, 503)
    t.same(ready.json(), unavailable)
    for (const [method, url, payload] of [['GET', '/users/ada'], ['PUT', '/users/ada', { name: 'X' }], ['POST', '/users', { email: 'b@example.com' }]] as const) {
      const res = await app.inject({ method, url, headers, payload })
      t.equal(res.statusCode, 503, `${method} ${url}`)
      t.same(res.json(), unavailable)
      t.equal(res.headers['retry-after'], '1')
    }
    t.equal((await app.inject({ method: 'GET', url: '/users/ada', headers: { authorization: 'Bearer unknown' } })).statusCode, 503, 'a key that cannot be checked is a 503, not a 401')
    t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200, 'the process is up')

    await cluster.resume()
    t.same((await app.inject({ method: 'GET', url: '/ready' })).json(), { status: 'ready' })
    const put = await app.inject({ method: 'PUT', url: '/users/ada', headers, payload: { name: 'Back' } })
    t.equal(put.statusCode, 200)
    t.equal(put.json().name, 'Back')
    t.ok(poolErrors.length > 0, 'the idle clients\' failures reached the pool listener, not an uncaught error')
  })
}

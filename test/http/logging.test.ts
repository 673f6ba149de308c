import { Writable } from 'node:stream'
import Fastify from 'fastify'
import t from 'tap'
import { buildHttpApp, loggerOptions } from '../../src/adapters/http/app.js'
import { usersHttpPlugin } from '../../src/index.js'
import { openUsersService } from '../../src/users-service.js'

function capture (): { stream: Writable, lines: () => string[] } {
  const chunks: string[] = []
  return {
    stream: new Writable({ write (chunk, _enc, done) { chunks.push(String(chunk)); done() } }),
    lines: () => chunks.join('').split('\n').filter((l) => l !== '')
  }
}

t.test('logs carry request id and route pattern, never keys or email addresses', async (t) => {
  const service = await openUsersService({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await service.close())
  const log = capture()
  const app = await buildHttpApp({ service, logger: { ...loggerOptions('info'), stream: log.stream } })
  t.teardown(async () => await app.close())
  const { apiKey } = await service.createApp({ name: 'app' })
  const headers = { authorization: `Bearer ${apiKey}`, 'x-request-id': 'trace-42' }
  await app.inject({ method: 'POST', url: '/users', headers, payload: { email: 'secret.person@example.com', user_id: 'secret.person@example.com' } })
  await app.inject({ method: 'PUT', url: '/users/secret.person%40example.com', headers, payload: { email: 'other.secret@example.com' } })
  await app.inject({ method: 'GET', url: '/users/secret.person@example.com?x=secret.person@example.com', headers: { authorization: 'Bearer klaim_sk_wrong' } })
  const lines = log.lines()
  t.equal(lines.length, 3, 'one line per request')
  const text = lines.join('\n')
  t.notMatch(text, /secret/, 'no email address, in URL, body or query')
  t.notMatch(text, new RegExp(apiKey.slice(9)), 'no API key')
  t.notMatch(text, /klaim_sk_wrong/)
  const entries = lines.map((l) => JSON.parse(l))
  t.ok(entries.some((e) => e.reqId === 'trace-42' && e.req?.route === '/users/:user_id'))
  t.ok(entries.some((e) => e.res?.statusCode === 401))
})

t.test('an unexpected failure is a bare 500, logged with the request id; an unreachable database a 503', async (t) => {
  const log = capture()
  const failing = {
    authenticate: async () => ({ appId: 'app', keyId: 'key' }),
    idempotent: async () => { throw new Error('unused') },
    createUser: async () => { throw new Error('unreachable') },
    updateUserProfile: async () => { throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }) },
    getUser: async () => { throw new Error('SELECT * FROM users WHERE secret') },
    ping: async () => { throw new Error('down') }
  }
  const app = await buildHttpApp({ service: failing, logger: { ...loggerOptions('info'), stream: log.stream } })
  t.teardown(async () => await app.close())
  const res = await app.inject({ method: 'GET', url: '/users/x', headers: { authorization: 'Bearer k', 'x-request-id': 'req-500' } })
  t.equal(res.statusCode, 500)
  t.same(res.json(), { message: 'Internal server error', code: 'internal' })
  t.equal(res.headers['x-request-id'], 'req-500')
  t.ok(log.lines().map((l) => JSON.parse(l)).some((e) => e.reqId === 'req-500' && e.level === 50 && e.err?.message.includes('SELECT')), 'the cause is in the log, not the response')
  const down = await app.inject({ method: 'PUT', url: '/users/x', headers: { authorization: 'Bearer k' }, payload: {} })
  t.equal(down.statusCode, 503)
  t.same(down.json(), { message: 'The database is unavailable. Try again shortly.', code: 'unavailable' })
  t.equal(down.headers['retry-after'], '1', 'with when to try again')
  const ready = await app.inject({ method: 'GET', url: '/ready' })
  t.equal(ready.statusCode, 503)
  t.same(ready.json(), { message: 'The database is unavailable. Try again shortly.', code: 'unavailable' })
  t.equal(ready.headers['retry-after'], '1')
  const health = await app.inject({ method: 'GET', url: '/health' })
  t.equal(health.statusCode, 200)
})

t.test('a host mounts usersHttpPlugin in its own Fastify instance', async (t) => {
  const service = await openUsersService({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await service.close())
  const host = Fastify({ routerOptions: { maxParamLength: 3072 } })
  host.get('/host', async () => ({ host: true }))
  await host.register(usersHttpPlugin, { service, prefix: '/v1' })
  t.teardown(async () => await host.close())
  const { apiKey } = await service.createApp({ name: 'app' })
  const created = await host.inject({ method: 'POST', url: '/v1/users', headers: { authorization: `Bearer ${apiKey}` }, payload: { email: 'a@example.com', user_id: 'a' } })
  t.equal(created.statusCode, 201)
  t.equal((await host.inject({ method: 'GET', url: '/host' })).statusCode, 200, 'host routes are not authenticated')
  t.equal((await host.inject({ method: 'PUT', url: '/v1/users/a', headers: { authorization: `Bearer ${apiKey}` }, payload: { name: 1 } })).json().code, 'validation_failed')
})

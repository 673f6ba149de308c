import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { Validator } from '@seriousme/openapi-schema-validator'
import t, { type Test } from 'tap'
import { buildHttpApp } from '../../src/adapters/http/app.js'
import { openUsersService } from '../../src/users-service.js'
import { databases } from '../helpers/databases.js'

const committed = JSON.parse(readFileSync(resolve(import.meta.dirname, '..', '..', 'openapi.json'), 'utf8'))

async function app (t: Test, options: { metrics?: false | { token?: string } } = {}) {
  const service = await openUsersService({ databaseUrl: 'sqlite::memory:' })
  const http = await buildHttpApp({ service, ...options })
  t.teardown(async () => { await http.close(); await service.close() })
  return { http, service }
}

t.test('/openapi.json is valid OpenAPI 3.1 and matches the committed openapi.json (npm run openapi)', async (t) => {
  const { http } = await app(t)
  const res = await http.inject({ method: 'GET', url: '/openapi.json' })
  t.equal(res.statusCode, 200)
  const served = res.json()
  t.same(served, committed, 'the committed openapi.json is up to date')
  const validator = new Validator()
  const result = await validator.validate(served)
  t.ok(result.valid, JSON.stringify(result.errors))
  t.equal(validator.version, '3.1')
})

t.test('every route documents every status of the contract, its headers and its security', async (t) => {
  const paths = committed.paths
  const statuses = (method: string, path: string): string[] => Object.keys(paths[path][method].responses)
  t.same(statuses('put', '/users/{user_id}'), ['200', '400', '401', '404', '409', '412', '413', '415', '422', '429', '503'])
  t.same(statuses('patch', '/users/{user_id}'), statuses('put', '/users/{user_id}'))
  t.same(statuses('post', '/users'), ['201', '400', '401', '409', '413', '415', '422', '429', '503'])
  t.same(statuses('get', '/users/{user_id}'), ['200', '304', '400', '401', '404', '412', '429', '503'])
  t.same(statuses('post', '/users/{user_id}'), ['200', '400', '401', '404', '412', '413', '415', '429', '503'])
  t.same(statuses('get', '/ready'), ['200', '503'])
  const put = paths['/users/{user_id}'].put
  t.equal(put.summary, 'Update User Profile')
  t.same(put.parameters.map((p: { in: string, name: string }) => `${p.in}:${p.name}`), ['path:user_id', 'header:if-match', 'header:if-none-match', 'header:idempotency-key'])
  t.same(put.security, [{ apiKey: [] }])
  t.same(Object.keys(put.requestBody.content), ['application/json', 'application/merge-patch+json'])
  t.same(put.responses['404'].content['application/json'].example, { message: 'Can not find user with the given user_id.', code: 'user_not_found' })
  t.match(JSON.stringify(put.responses['412'].content['application/json']), /"The user was modified since it was read\.","code":"precondition_failed".*"The user matches If-None-Match\."/)
  t.match(JSON.stringify(put.responses['409'].content['application/json']), /user_id_taken.*email_taken.*idempotency_in_progress/)
  t.same(Object.keys(put.responses['200'].headers), ['etag', 'cache-control', 'idempotent-replayed', 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset'])
  t.same(Object.keys(put.responses['429'].headers), ['retry-after'])
  t.same(Object.keys(put.responses['503'].headers), ['retry-after'])
  t.same(Object.keys(paths['/ready'].get.responses['503'].headers), ['retry-after'])
  const notModified = paths['/users/{user_id}'].get.responses['304']
  t.equal(notModified.content, undefined, 'a 304 has no body')
  t.same(Object.keys(notModified.headers), ['etag', 'cache-control', 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset'])
  t.same(paths['/users/{user_id}'].get.parameters.map((p: { in: string, name: string }) => `${p.in}:${p.name}`), ['path:user_id', 'header:if-match', 'header:if-none-match'])
  t.match(JSON.stringify(paths['/users/{user_id}'].post.responses['412'].content['application/json']), /"The user was modified since it was read\.","code":"precondition_failed".*"The user matches If-None-Match\."/)
  t.ok(paths['/users'].post.responses['201'].headers.location)
  t.same(committed.components.securitySchemes.apiKey, { type: 'http', scheme: 'bearer', description: committed.components.securitySchemes.apiKey.description })
})

t.test('the docs page is served from the package', async (t) => {
  const { http } = await app(t)
  const page = await http.inject({ method: 'GET', url: '/docs' })
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /text\/html/)
  t.notMatch(page.body, /https?:\/\/(?!127\.0\.0\.1)[a-z0-9.-]+\//i, 'no CDN')
})

t.test('/metrics shows the request just made; it can be protected or turned off', async (t) => {
  const { http, service } = await app(t)
  const { apiKey } = await service.createApp({ name: 'app' })
  await http.inject({ method: 'GET', url: '/users/nobody', headers: { authorization: `Bearer ${apiKey}` } })
  const metrics = await http.inject({ method: 'GET', url: '/metrics' })
  t.equal(metrics.statusCode, 200)
  t.match(metrics.headers['content-type'], /^text\/plain/)
  t.match(metrics.body, /http_requests_total\{method="GET",route="\/users\/:user_id",status="404"\} 1/)
  t.match(metrics.body, /http_request_duration_seconds_bucket\{le="0.1",method="GET",route="\/users\/:user_id",status="404"\} 1/)
  await http.inject({ method: 'GET', url: '/users/nobody', headers: { authorization: `Bearer ${apiKey}` } })
  await http.inject({ method: 'GET', url: '/users/nobody', headers: { authorization: 'Bearer klaim_sk_wrong' } })
  const again = (await http.inject({ method: 'GET', url: '/metrics' })).body
  t.match(again, /http_requests_total\{method="GET",route="\/users\/:user_id",status="404"\} 2/, 'each series counts on')
  t.match(again, /http_request_duration_seconds_count\{method="GET",route="\/users\/:user_id",status="404"\} 2/)
  t.match(again, /http_requests_total\{method="GET",route="\/users\/:user_id",status="401"\} 1/, 'a new status is a new series')
  const guarded = await app(t, { metrics: { token: 's3cret' } })
  t.equal((await guarded.http.inject({ method: 'GET', url: '/metrics' })).statusCode, 401)
  t.equal((await guarded.http.inject({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer s3cret' } })).statusCode, 200)
  const off = await app(t, { metrics: false })
  t.equal((await off.http.inject({ method: 'GET', url: '/metrics' })).statusCode, 404)
})

const postgres = databases.find((db) => db.dialect === 'postgres')
if (postgres !== undefined) {
  t.test('/metrics shows the PostgreSQL pool and the pipelined connection', async (t) => {
    const service = await openUsersService({ databaseUrl: await postgres.fresh(t), poolMax: 4 })
    const http = await buildHttpApp({ service, metrics: { pool: service.pool, pipeline: service.pipeline } })
    t.teardown(async () => { await http.close(); await service.close() })
    await http.inject({ method: 'GET', url: '/ready' })
    const metrics = async (): Promise<string> => (await http.inject({ method: 'GET', url: '/metrics' })).body
    t.match(await metrics(), /^db_pipeline_open 0$/m, 'opened by the first statement that needs it')
    const { apiKey } = await service.createApp({ name: 'app' })
    // The key-and-user read goes out on the pipelined connection.
    t.equal((await http.inject({ method: 'GET', url: '/users/nobody', headers: { authorization: `Bearer ${apiKey}` } })).statusCode, 404)
    const body = await metrics()
    t.match(body, /^db_pool_connections [1-4]$/m)
    t.match(body, /^db_pool_idle_connections \d+$/m)
    t.match(body, /^db_pool_waiting_requests 0$/m)
    t.match(body, /^db_pipeline_open 1$/m)
    t.match(body, /^db_pipeline_handed_to_pool_total\{reason="lock_wait"\} 0$/m)
    t.match(body, /^db_pipeline_handed_to_pool_total\{reason="no_connection"\} 0$/m)
    t.match(body, /^db_pipeline_handed_to_pool_total\{reason="not_prepared"\} 0$/m)
  })
}

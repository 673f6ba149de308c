import fc from 'fast-check'
import t from 'tap'
import { eachDatabase } from '../helpers/databases.js'
import { buildHttpApp } from '../../src/adapters/http/app.js'
import { jsonEqual } from '../../src/domain/metadata.js'
import { clientFor, freshService } from '../helpers/fixtures.js'

// Thousands of random and mutated requests: never a 500, always a JSON error with a code, and
// the stored user is either unchanged or exactly what the accepted response says (key order
// aside: PostgreSQL's jsonb reorders metadata keys, and the contract leaves key order open).
// A longer run, or another one: FUZZ_RUNS=20000 FUZZ_SEED=7 npm test -- test/http/fuzz.test.ts
const SEED = Number(process.env.FUZZ_SEED ?? 424242)
const RUNS = Number(process.env.FUZZ_RUNS ?? 1500)

const text = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.constantFrom('', ' ', 'ada@example.com', 'Ada', 'bob', 'BOB@example.com', 'new@example.com', '\u0000', '\ud800', 'x'.repeat(300), '😀'.repeat(60), ' a@b.co ', 'a@b', '__proto__', '1e400')
)
const json = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, text, fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(tie('value'), { maxLength: 4 }), tie('object')),
  object: fc.dictionary(fc.oneof(text, fc.constantFrom('name', 'email', 'user_id', 'metadata', 'userId', '__proto__', 'constructor', '')), tie('value'), { maxKeys: 5 })
}))
const body = fc.oneof(
  fc.record({ name: fc.option(text), email: text, user_id: text, metadata: fc.oneof(json.object, fc.constant(null)) }, { requiredKeys: [] }),
  json.value
).map((v) => JSON.stringify(v))
const raw = fc.oneof(
  body,
  body.chain((b) => fc.tuple(fc.nat(b.length), fc.string({ maxLength: 3 })).map(([i, s]) => b.slice(0, i) + s + b.slice(i + 1))),
  fc.constantFrom('', '{', `{"name": "${'x'.repeat(70000)}"}`, '{"metadata": {"a": 1e400}}', '{"name": "\\ud800"}', '{"__proto__": {"x": 1}}', '[1,2]', 'null', `{"metadata": ${'['.repeat(3000)}${']'.repeat(3000)}}`)
)
// A body that writes a member twice (JSON.parse would keep the second): never accepted.
const twice = fc.oneof(
  fc.record({ name: fc.option(text), email: text, user_id: text, metadata: json.object, other: json.value }, { requiredKeys: [] })
    .chain((o) => fc.constantFrom(...Object.entries(o).map(([k, v]) => `${JSON.stringify(o).slice(0, -1)},${JSON.stringify(k)}:${JSON.stringify(v)}}`), '{"name": null, "name": null}')),
  fc.constantFrom('{"name": null, "name": null}', '{"name": "A", "metadata": {"k": 1, "k": 2}}', '{"metadata": {}, "metadata": null}', '{"email": "x@example.com", "email": "y@example.com"}', '{"user_id": "z", "user_id": "z"}')
)
const request = fc.record({
  method: fc.constantFrom('PUT', 'PATCH', 'POST', 'GET', 'DELETE'),
  path: fc.oneof(fc.constant('CURRENT'), fc.constantFrom('nobody', '%00', '%E0%A4%A', 'a%2Fb', ' x', 'x'.repeat(300)), text.map((s) => encodeURIComponent(s.replace(/\p{Cs}/gu, '\ufffd')))),
  payload: fc.oneof({ weight: 9, arbitrary: raw.map((text) => ({ text, twice: false })) }, { weight: 1, arbitrary: twice.map((text) => ({ text, twice: true })) }),
  contentType: fc.oneof(
    { weight: 8, arbitrary: fc.constant('application/json') },
    { weight: 2, arbitrary: fc.constantFrom('application/merge-patch+json', 'text/plain', 'application/json; charset=latin1', undefined) }
  ),
  contentEncoding: fc.oneof(
    { weight: 9, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.constantFrom('gzip', 'identity', 'br') }
  ),
  ifMatch: fc.option(fc.constantFrom('*', '"x"', 'W/"x"', 'garbage', 'CURRENT_ETAG')),
  ifNoneMatch: fc.oneof({ weight: 4, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constantFrom('*', '"x"', 'garbage', 'CURRENT_ETAG', 'W/CURRENT_ETAG') }),
  idempotencyKey: fc.option(fc.constantFrom('k1', 'k2', '', 'é')),
  // Every method but GET answers a query parameter with an error (a write refuses it; DELETE
  // is no route); GET ignores them; `?` alone is no query.
  query: fc.oneof({ weight: 9, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom('?', '?name=Eve', '?a=1&a=2', '?_=1700000000', '?%ZZ', '?user_id=x&metadata') })
}, { requiredKeys: ['method', 'path', 'payload', 'query'] })

eachDatabase(t, (t, db) => {
  t.test(`fuzz: ${RUNS} requests (seed ${SEED})`, async (t) => {
    // No rate limit: a long run's own checking reads would pass 6,000 a minute and get 429s.
    const service = await freshService(t, db)
    const app = await buildHttpApp({ service, rateLimitPerMinute: 0 })
    t.teardown(async () => await app.close())
    const { appId, apiKey } = await service.createApp({ name: 'fuzz' })
    const client = clientFor(app, service, appId, apiKey)
    await client.createUser({ email: 'ada@example.com', user_id: 'ada', metadata: { keep: 1 } })
    await client.createUser({ email: 'bob@example.com', user_id: 'bob' })
    const read = await client.request({ method: 'GET', url: '/users/ada' })
    let current = read.json()
    let etag = read.headers.etag as string
    const statuses: Record<number, number> = {}
    const runs = db.dialect === 'postgres' ? Math.ceil(RUNS / 3) : RUNS

    await fc.assert(fc.asyncProperty(request, async (r) => {
      const path = r.path === 'CURRENT' ? encodeURIComponent(current.user_id) : r.path
      // A random path can name the user too, once it was renamed to one of the sample strings.
      const targetsCurrent = path === encodeURIComponent(current.user_id)
      const headers: Record<string, string> = {}
      if (r.contentType !== undefined) headers['content-type'] = r.contentType
      if (r.contentEncoding != null) headers['content-encoding'] = r.contentEncoding
      if (r.ifMatch != null) headers['if-match'] = r.ifMatch === 'CURRENT_ETAG' ? etag : r.ifMatch
      if (r.ifNoneMatch != null) headers['if-none-match'] = r.ifNoneMatch.replace('CURRENT_ETAG', etag)
      if (r.idempotencyKey != null) headers['idempotency-key'] = r.idempotencyKey
      const res = await client.request({ method: r.method as 'PUT', url: `/users/${path}${r.query}`, payload: r.method === 'GET' ? undefined : r.payload.text, headers })
      statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1
      if (res.statusCode >= 500) throw new Error(`${res.statusCode} for ${JSON.stringify(r)}: ${res.body}`)
      if (r.method !== 'GET' && r.query.length > 1 && res.statusCode < 400) throw new Error(`a ${res.statusCode} for a write with a query: ${JSON.stringify(r)}`)
      // A 304 (no body) only to a read whose If-None-Match is * (any user there is), or holds
      // the current tag of the user read, and whose If-Match, if any, holds.
      if (res.statusCode === 304) {
        const matches = r.ifNoneMatch === '*' || (targetsCurrent && (r.ifNoneMatch === 'CURRENT_ETAG' || r.ifNoneMatch === 'W/CURRENT_ETAG'))
        const holds = r.ifMatch == null || r.ifMatch === '*' || (targetsCurrent && r.ifMatch === 'CURRENT_ETAG')
        if (!(r.method === 'GET' && res.body === '' && matches && holds)) throw new Error(`a 304 for ${JSON.stringify(r)}`)
        return
      }
      const answer = res.json()
      if (res.statusCode >= 400 && (typeof answer.code !== 'string' || typeof answer.message !== 'string')) throw new Error(`no error shape: ${res.body}`)
      // A compressed body is never read: refused whatever it holds, unless the URL, key or route
      // is. (With no body and no content type there is nothing to decode.)
      const body = r.method !== 'GET' && (r.payload.text !== '' || r.contentType !== undefined)
      if (body && r.payload.twice && res.statusCode < 400) throw new Error(`a ${res.statusCode} for a body with a name twice: ${JSON.stringify(r)}`)
      if (body && r.contentEncoding != null && r.contentEncoding !== 'identity' && !([401, 404, 415].includes(res.statusCode) || answer.code === 'invalid_url')) {
        throw new Error(`a ${res.statusCode} for a body sent with Content-Encoding ${r.contentEncoding}: ${JSON.stringify(r)}`)
      }
      // An accepted update of the user (not a replay of an earlier answer) may have renamed it.
      const updated = res.statusCode === 200 && (r.method === 'PUT' || r.method === 'PATCH') && targetsCurrent && res.headers['idempotent-replayed'] === undefined
      const stored = await client.request({ method: 'GET', url: `/users/${encodeURIComponent(updated ? answer.user_id : current.user_id)}` })
      const storedBody = stored.json()
      if (updated) {
        if (!jsonEqual(storedBody, answer)) throw new Error(`stored ${stored.body} but answered ${res.body}`)
        current = storedBody
        etag = stored.headers.etag as string
      } else if (!jsonEqual(storedBody, current)) {
        throw new Error(`a ${res.statusCode} changed the user: ${stored.body} (was ${JSON.stringify(current)}) after ${JSON.stringify(r)}`)
      }
      // No shrinking: the server's state moves on with every run, so a shrunk case would mislead.
    }), { seed: SEED, numRuns: runs, endOnFailure: true })
    t.ok(Object.keys(statuses).every((s) => Number(s) < 500), `statuses seen: ${JSON.stringify(statuses)}`)
    t.ok(Object.keys(statuses).length >= 6, 'the fuzz reaches many outcomes')
  })
})

import t from 'tap'
import { INEXACT_INTEGER_MESSAGE, ZEROED_NUMBER_MESSAGE } from '../../src/adapters/http/json-text.js'
import { eachDatabase } from '../helpers/databases.js'
import { freshClient, type TestClient } from '../helpers/fixtures.js'

const JSON_TYPE = 'application/json; charset=utf-8'

async function withUser (client: TestClient, body: Record<string, unknown> = {}) {
  const res = await client.createUser({ email: 'ada@example.com', user_id: 'ada', name: 'Ada', metadata: { plan: 'free', keep: 1 }, ...body })
  if (res.statusCode !== 201) throw new Error(`create failed: ${res.body}`)
  return res.json()
}

eachDatabase(t, (t, db) => {
  t.test('200: name, email, user_id and metadata change together; ETag and updated_at follow', async (t) => {
    const client = await freshClient(t, db)
    const created = await withUser(client)
    const res = await client.put('ada', { name: ' Ada L ', email: ' NEW@Example.com ', user_id: 'ada2', metadata: { plan: 'pro', keep: null, n: { a: 1 } } })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['content-type'], JSON_TYPE)
    const body = res.json()
    t.same(body, {
      ...created,
      message: 'fetch resource successfully',
      name: 'Ada L',
      email: 'NEW@Example.com',
      user_id: 'ada2',
      metadata: { plan: 'pro', n: { a: 1 } },
      updated_at: body.updated_at
    })
    t.ok(body.updated_at >= created.updated_at)
    t.equal(res.headers.etag, `"${created.klaim_id}.2"`)
    t.equal((await client.request({ method: 'GET', url: '/users/ada' })).statusCode, 404, 'the old user_id is gone')
    const read = await client.request({ method: 'GET', url: '/users/ada2' })
    t.same(read.json(), body)
    t.equal(read.headers.etag, res.headers.etag)
  })

  t.test('PATCH behaves as PUT; merge-patch+json is accepted', async (t) => {
    const client = await freshClient(t, db)
    await withUser(client)
    const res = await client.request({ method: 'PATCH', url: '/users/ada', payload: JSON.stringify({ metadata: { plan: 'pro' } }), headers: { 'content-type': 'application/merge-patch+json' } })
    t.equal(res.statusCode, 200)
    t.same(res.json().metadata, { plan: 'pro', keep: 1 })
  })

  t.test('{} and unchanged values change nothing: same ETag, same updated_at', async (t) => {
    const client = await freshClient(t, db)
    const created = await withUser(client)
    for (const body of [{}, { name: 'Ada', email: 'ada@example.com', user_id: 'ada', metadata: { plan: 'free' } }, { metadata: { absent: null } }]) {
      const res = await client.put('ada', body)
      t.equal(res.statusCode, 200)
      t.same(res.json(), { ...created, message: 'fetch resource successfully' })
      t.equal(res.headers.etag, `"${created.klaim_id}.1"`)
    }
  })

  t.test('metadata: null clears everything; nested deletes', async (t) => {
    const client = await freshClient(t, db)
    await withUser(client, { metadata: { a: { b: 1, c: 2 }, d: 1 } })
    t.same((await client.put('ada', { metadata: { a: { b: null } } })).json().metadata, { a: { c: 2 }, d: 1 })
    t.same((await client.put('ada', { metadata: null })).json().metadata, {})
  })

  t.test('name: null clears the name', async (t) => {
    const client = await freshClient(t, db)
    await withUser(client)
    t.equal((await client.put('ada', { name: null })).json().name, null)
  })

  t.test('404: no such user, or another app\'s user, whatever If-Match says', async (t) => {
    const client = await freshClient(t, db)
    await withUser(client)
    const other = await client.service.createApp({ name: 'other' })
    const notFound = { message: 'Can not find user with the given user_id.', code: 'user_not_found' }
    for (const [url, key, headers] of [
      ['/users/nobody', client.apiKey, {}],
      ['/users/ada', other.apiKey, {}],
      ['/users/nobody', client.apiKey, { 'if-match': '"x"' }]
    ] as const) {
      const res = await client.request({ method: 'PUT', url, payload: { name: 'X' }, headers: { authorization: `Bearer ${key}`, ...headers } })
      t.equal(res.statusCode, 404)
      t.same(res.json(), notFound)
      t.equal(res.headers['content-type'], JSON_TYPE)
    }
    t.equal((await client.request({ method: 'GET', url: '/users/ada' })).json().name, 'Ada', 'nothing changed')
  })

  t.test('409: user_id or email of another user of the app; user_id reported first; own values never conflict', async (t) => {
    const client = await freshClient(t, db)
    await withUser(client)
    await client.createUser({ email: 'bob@example.com', user_id: 'bob' })
    const userIdTaken = await client.put('ada', { user_id: 'bob' })
    t.equal(userIdTaken.statusCode, 409)
    t.same(userIdTaken.json(), { message: 'User ID already exists', code: 'user_id_taken' })
    const emailTaken = await client.put('ada', { email: 'BOB@example.com' })
    t.equal(emailTaken.statusCode, 409)
    t.same(emailTaken.json(), { message: 'Email already exists', code: 'email_taken' })
    const both = await client.put('ada', { email: 'bob@example.com', user_id: 'bob' })
    t.same(both.json(), { message: 'User ID already exists', code: 'user_id_taken' })
    t.equal((await client.put('ada', { email: 'ADA@example.com', user_id: 'ada' })).statusCode, 200)
    const other = await client.service.createApp({ name: 'other' })
    await client.request({ method: 'POST', url: '/users', payload: { email: 'carol@example.com', user_id: 'carol' }, headers: { authorization: `Bearer ${other.apiKey}` } })
    t.equal((await client.put('ada', { user_id: 'carol', email: 'carol@example.com' })).statusCode, 200, 'another app\'s values are free')
    const failed = await client.put('carol', { name: 'Changed', user_id: 'bob' })
    t.equal(failed.statusCode, 409)
    t.equal((await client.request({ method: 'GET', url: '/users/carol' })).json().name, 'Ada', 'a refused request stores nothing')
  })

  t.test('If-Match: matching tag or * updates; a stale, weak or unknown tag is 412 and changes nothing', async (t) => {
    const client = await freshClient(t, db)
    await withUser(client)
    const etag = (await client.request({ method: 'GET', url: '/users/ada' })).headers.etag as string
    const ok = await client.put('ada', { name: 'B' }, { 'if-match': `"nope", ${etag}` })
    t.equal(ok.statusCode, 200)
    const precondition = { message: 'The user was modified since it was read.', code: 'precondition_failed' }
    for (const stale of [etag, `W/${ok.headers.etag as string}`, '"other"']) {
      const res = await client.put('ada', { name: 'C' }, { 'if-match': stale })
      t.equal(res.statusCode, 412, stale)
      t.same(res.json(), precondition)
    }
    t.equal((await client.put('ada', { name: 'D' }, { 'if-match': '*' })).statusCode, 200)
    t.equal((await client.request({ method: 'GET', url: '/users/ada' })).json().name, 'D')
    const bad = await client.put('ada', { name: 'E' }, { 'if-match': 'not-a-tag' })
    t.equal(bad.statusCode, 400)
    t.same(bad.json(), { message: 'The request is invalid.', code: 'validation_failed', errors: [{ path: '/header/if-match', message: 'must be * or a list of entity tags' }] })
  })

  t.test('If-None-Match: a matching, weak-matching or * tag is 412 and changes nothing; another tag updates', async (t) => {
    const client = await freshClient(t, db)
    await withUser(client)
    const etag = (await client.request({ method: 'GET', url: '/users/ada' })).headers.etag as string
    const matches = { message: 'The user matches If-None-Match.', code: 'precondition_failed' }
    for (const current of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      const res = await client.put('ada', { name: 'C' }, { 'if-none-match': current })
      t.equal(res.statusCode, 412, current)
      t.same(res.json(), matches)
    }
    t.equal((await client.put('ada', {}, { 'if-none-match': '*' })).statusCode, 412, 'even when nothing would change')
    t.equal((await client.request({ method: 'GET', url: '/users/ada' })).json().name, 'Ada', 'nothing changed')
    const ok = await client.put('ada', { name: 'B' }, { 'if-none-match': '"other", W/"older"' })
    t.equal(ok.statusCode, 200)
    t.equal(ok.json().name, 'B')
    t.equal((await client.put('ada', { name: 'D' }, { 'if-none-match': etag })).statusCode, 200, 'the tag read before the last change no longer matches')
    t.equal((await client.put('ada', { name: 'E' }, { 'if-match': '"stale"', 'if-none-match': '*' })).json().message, 'The user was modified since it was read.', 'If-Match is checked first')
    t.equal((await client.put('nobody', { name: 'E' }, { 'if-none-match': '*' })).statusCode, 404, 'a missing user is a 404 whatever it says')
    const bad = await client.put('nobody', { name: 'E' }, { 'if-none-match': 'not-a-tag' })
    t.same(bad.json(), { message: 'The request is invalid.', code: 'validation_failed', errors: [{ path: '/header/if-none-match', message: 'must be * or a list of entity tags' }] }, 'a bad value is a 400, before the lookup')
    const create = await client.request({ method: 'POST', url: '/users', payload: { email: 'bob@example.com' }, headers: { 'if-none-match': 'not-a-tag' } })
    t.equal(create.statusCode, 201, 'a create ignores it')
  })

  t.test('400: every offending field is listed; nothing is stored', async (t) => {
    const client = await freshClient(t, db)
    await withUser(client)
    const res = await client.request({
      method: 'PUT',
      url: '/users/ada',
      headers: { 'content-type': 'application/json' },
      payload: '{"name": 42, "email": "bad", "userId": "x", "user_id": " x", "metadata": {"__proto__": 1, "": 2, "ok": "fine"}, "extra": true}'
    })
    t.equal(res.statusCode, 400)
    const body = res.json()
    t.equal(body.code, 'validation_failed')
    t.equal(body.message, 'The request is invalid.')
    t.same(body.errors.map((e: { path: string }) => e.path).sort(), ['/email', '/extra', '/metadata/', '/metadata/__proto__', '/name', '/userId', '/user_id'])
    t.equal((await client.request({ method: 'GET', url: '/users/ada' })).json().name, 'Ada')
  })

  t.test('400: strings, numbers and types are checked, never coerced', async (t) => {
    const client = await freshClient(t, db)
    await withUser(client)
    const cases: Array<[string, string]> = [
      ['{"name": "a\\u0000b"}', '/name'],
      ['{"name": "\\ud800"}', '/name'],
      ['{"metadata": {"x": "\\udfff"}}', '/metadata/x'],
      ['{"metadata": {"x": 1e400}}', '/metadata/x'],
      ['{"name": 42}', '/name'],
      ['{"name": true}', '/name'],
      ['{"email": null}', '/email'],
      ['{"user_id": null}', '/user_id'],
      ['{"user_id": ""}', '/user_id'],
      ['{"metadata": []}', '/metadata'],
      ['{"metadata": "x"}', '/metadata'],
      ['[]', ''],
      ['null', ''],
      ['"x"', ''],
      ['{"metadata": {"a": {"constructor": 1}}}', '/metadata/a/constructor'],
      ['{"metadata": {"prototype": null}}', '/metadata/prototype']
    ]
    for (const [payload, path] of cases) {
      const res = await client.request({ method: 'PUT', url: '/users/ada', payload, headers: { 'content-type': 'application/json' } })
      t.equal(res.statusCode, 400, payload)
      t.equal(res.json().code, 'validation_failed', payload)
      t.same(res.json().errors.map((e: { path: string }) => e.path), [path], payload)
    }
  })

  t.test('400 on the merged metadata, naming the limit, after lookup and If-Match', async (t) => {
    const client = await freshClient(t, db)
    const fortyNine = Object.fromEntries(Array.from({ length: 49 }, (_, i) => [`k${i}`, i]))
    await withUser(client, { metadata: fortyNine })
    t.equal((await client.put('ada', { metadata: { extra: 1 } })).statusCode, 200, '50 keys')
    const over = await client.put('ada', { metadata: { another: 1 } })
    t.equal(over.statusCode, 400)
    t.same(over.json(), { message: 'The request is invalid.', code: 'validation_failed', errors: [{ path: '/metadata', message: 'metadata must have at most 50 top-level keys' }] })
    const deep = await client.put('ada', { metadata: { a: { b: { c: { d: { e: { f: 1 } } } } } } })
    t.same(deep.json().errors, [{ path: '/metadata', message: 'metadata must be nested at most 5 levels deep' }])
    const big = await client.put('ada', { metadata: { k0: 'x'.repeat(8200) } })
    t.same(big.json().errors, [{ path: '/metadata', message: 'metadata must be at most 8192 bytes as compact UTF-8 JSON' }])
    t.equal((await client.put('nobody', { metadata: { k0: 'x'.repeat(8200) } })).statusCode, 404, 'lookup comes first')
    t.equal((await client.put('ada', { metadata: { k0: 'x'.repeat(8200) } }, { 'if-match': '"stale"' })).statusCode, 412, 'If-Match comes before limits')
    t.equal(Object.keys((await client.request({ method: 'GET', url: '/users/ada' })).json().metadata).length, 50)
  })

  t.test('path user_id: long ids reach the route; bad ones are 400 naming /path/user_id', async (t) => {
    const client = await freshClient(t, db)
    const long = '😀'.repeat(255)
    t.equal((await client.createUser({ email: 'long@example.com', user_id: long })).statusCode, 201)
    const res = await client.put(long, { name: 'Long' })
    t.equal(res.statusCode, 200)
    t.equal(res.json().user_id, long)
    for (const bad of ['x'.repeat(256), ' lead', 'a\u0001b']) {
      const r = await client.put(bad, {})
      t.equal(r.statusCode, 400, JSON.stringify(bad))
      t.same(r.json().errors, [{ path: '/path/user_id', message: 'must be a string of 1 to 255 characters, without control characters or leading or trailing white space' }])
    }
    const both = await client.put('x'.repeat(256), { name: 1 }, { 'if-match': 'bad' })
    t.same(both.json().errors.map((e: { path: string }) => e.path), ['/path/user_id'], 'path first')
    const headerFirst = await client.put('ada', { name: 1 }, { 'if-match': 'bad' })
    t.same(headerFirst.json().errors.map((e: { path: string }) => e.path), ['/header/if-match'], 'then headers, then body')
    t.equal((await client.put('a/b', {})).statusCode, 404, 'an encoded slash is part of the id')
  })

  t.test('a name twice in one object is a 400 naming it, with the body\'s other errors; nothing is stored', async (t) => {
    const client = await freshClient(t, db)
    const created = await withUser(client)
    const json = { 'content-type': 'application/json' }
    const put = async (payload: string, headers = {}) => await client.request({ method: 'PUT', url: '/users/ada', payload, headers: { ...json, ...headers } })
    const twice = await put('{"name": "Eve", "name": "Ada"}')
    t.equal(twice.statusCode, 400)
    t.same(twice.json(), { message: 'The request is invalid.', code: 'validation_failed', errors: [{ path: '/name', message: 'must appear only once in its object' }] })
    // Escapes do not hide a repeat; the same name in different objects is no repeat.
    const nested = await put('{"metadata": {"plan": {"x": 1}, "n": [{"a~/": 1, "a\\u007e/": 2}], "pl\\u0061n": 2}, "bad": 1, "name": 3}')
    t.same(nested.json().errors, [
      { path: '/bad', message: 'is not a known field' },
      { path: '/name', message: 'must be a string of 1 to 200 characters (after trimming), or null' },
      { path: '/metadata/n/0/a~0~1', message: 'must appear only once in its object' },
      { path: '/metadata/plan', message: 'must appear only once in its object' }
    ], 'every offending field of the body at once')
    t.same((await put('{"name": "Eve", "name": "Ada"}', { 'if-match': 'bad' })).json().errors, [{ path: '/header/if-match', message: 'must be * or a list of entity tags' }], 'the headers come first')
    t.same((await put('{"metadata": {"a": {"x": 1}, "b": {"x": 1}}, "name": "x\\",\\"name"}')).statusCode, 200, 'no repeat')
    const create = await client.request({ method: 'POST', url: '/users', payload: '{"email": "bob@example.com", "email": "eve@example.com"}', headers: json })
    t.same(create.json().errors, [{ path: '/email', message: 'must appear only once in its object' }], 'on create too')
    const read = (await client.request({ method: 'GET', url: '/users/ada' })).json()
    t.same(read, { ...created, message: 'fetch resource successfully', name: 'x","name', metadata: { plan: 'free', keep: 1, a: { x: 1 }, b: { x: 1 } }, updated_at: read.updated_at }, 'only the request without a repeat changed the user')
    t.equal((await client.request({ method: 'GET', url: '/users/bob' })).statusCode, 404, 'nothing created')
  })

  t.test('numbers: an integer a 64-bit float cannot keep, or one it would make 0, is a 400 naming it; nothing is stored', async (t) => {
    const client = await freshClient(t, db)
    const created = await withUser(client)
    const json = { 'content-type': 'application/json' }
    const put = async (payload: string) => await client.request({ method: 'PUT', url: '/users/ada', payload, headers: json })
    const refused = await put('{"metadata": {"order_id": 12345678901234567890, "tiny": 1e-400, "max": 9007199254740992}, "name": "Eve"}')
    t.equal(refused.statusCode, 400)
    t.same(refused.json(), {
      message: 'The request is invalid.',
      code: 'validation_failed',
      errors: [{ path: '/metadata/order_id', message: INEXACT_INTEGER_MESSAGE }, { path: '/metadata/tiny', message: ZEROED_NUMBER_MESSAGE }]
    })
    const create = await client.request({ method: 'POST', url: '/users', payload: '{"email": "bob@example.com", "user_id": "bob", "metadata": {"ids": [9007199254740993]}}', headers: json })
    t.same(create.json().errors, [{ path: '/metadata/ids/0', message: INEXACT_INTEGER_MESSAGE }], 'on create too')
    t.equal((await client.request({ method: 'GET', url: '/users/bob' })).statusCode, 404, 'nothing created')
    t.same((await client.request({ method: 'GET', url: '/users/ada' })).json(), { ...created, message: 'fetch resource successfully' }, 'nothing stored')

    // What JavaScript writes is kept as written; a number with a fraction is read as a float.
    const kept = await put('{"metadata": {"big": 18446744073709552000, "max": 9007199254740992, "float": 0.79999999999999993, "zero": -0.0e-400}}')
    t.equal(kept.statusCode, 200, kept.body)
    const read = (await client.request({ method: 'GET', url: '/users/ada' })).body
    for (const written of ['"big":18446744073709552000', '"max":9007199254740992', '"float":0.7999999999999999', '"zero":0']) t.ok(read.includes(written), written)
  })

  t.test('query parameters: refused by every route with a body, naming each; ignored by GET and HEAD', async (t) => {
    const client = await freshClient(t, db)
    const created = await withUser(client)
    const QUERY = 'is not accepted: this endpoint takes no query parameters (fields go in the JSON body)'
    const json = { 'content-type': 'application/json' }
    for (const method of ['PUT', 'PATCH'] as const) {
      const res = await client.request({ method, url: '/users/ada?name=Eve', payload: {} })
      t.equal(res.statusCode, 400, method)
      t.same(res.json(), { message: 'The request is invalid.', code: 'validation_failed', errors: [{ path: '/query/name', message: QUERY }] }, method)
    }
    const paths = async (url: string, options: { method?: 'PUT' | 'POST', payload?: string, headers?: Record<string, string> } = {}) =>
      (await client.request({ method: 'PUT', url, payload: '{}', ...options, headers: { ...json, ...options.headers } })).json().errors.map((e: { path: string }) => e.path)
    t.same(await paths('/users/ada?a=1&a=2&b&x~y%2Fz=3'), ['/query/a', '/query/b', '/query/x~0y~1z'], 'each name once, as a JSON Pointer token')
    t.same(await paths('/users/ada?name=Eve', { payload: '{"name": 1}', headers: { 'if-match': 'bad' } }), ['/query/name'], 'a part of its own, before the headers and the body')
    t.same(await paths('/users/x%01?name=Eve'), ['/path/user_id'], 'after the path')
    t.same(await paths(`/users/ada?${Array.from({ length: 150 }, (_, i) => `p${i}=1`).join('&')}`), Array.from({ length: 100 }, (_, i) => `/query/p${i}`), 'at most 100 listed')
    t.same(await paths('/users?plan=pro', { method: 'POST', payload: '{"email": "bob@example.com", "user_id": "bob"}' }), ['/query/plan'], 'a create')
    t.same(await paths('/users/ada?x=1', { method: 'POST', payload: '{}' }), ['/query/x'], 'the POST read alias')
    t.equal((await client.request({ method: 'GET', url: '/users/bob' })).statusCode, 404, 'nothing created')
    t.equal((await client.request({ method: 'PUT', url: '/users/ada?name=Eve', payload: {}, headers: { authorization: 'Bearer nope' } })).statusCode, 401, 'the key first')
    t.equal((await client.request({ method: 'GET', url: '/users/ada' })).headers.etag, `"${created.klaim_id}.1"`, 'no refused request changed the user')
    const keyed = { 'idempotency-key': 'q1' }
    t.equal((await client.request({ method: 'PUT', url: '/users/ada?name=Eve', payload: { name: 'Eve' }, headers: keyed })).statusCode, 400)
    const retried = await client.request({ method: 'PUT', url: '/users/ada', payload: { name: 'Eve' }, headers: keyed })
    t.same([retried.statusCode, retried.headers['idempotent-replayed'], retried.json().name], [200, undefined, 'Eve'], 'a refused query takes no Idempotency-Key: the request without it runs')

    for (const method of ['GET', 'HEAD'] as const) {
      const read = await client.request({ method, url: '/users/ada?_=1700000000&name=Eve' })
      t.equal(read.statusCode, 200, `${method} ignores them (a cache-buster)`)
      t.equal(read.headers.etag, retried.headers.etag)
    }
    const empty = await client.request({ method: 'PUT', url: '/users/ada?', payload: { name: 'Ada L' } })
    t.equal(empty.statusCode, 200, 'an empty query is none')
    t.equal(empty.json().name, 'Ada L')
  })

  t.test('a body is required on PUT', async (t) => {
    const client = await freshClient(t, db)
    await withUser(client)
    for (const headers of [{}, { 'content-type': 'application/json' }]) {
      const res = await client.request({ method: 'PUT', url: '/users/ada', headers })
      t.equal(res.statusCode, 400)
      t.same(res.json(), { message: 'The request is invalid.', code: 'validation_failed', errors: [{ path: '', message: 'must be a JSON object' }] })
    }
    const empty = { 'content-type': 'application/json', 'content-length': '0' }
    const res = await client.request({ method: 'PUT', url: '/users/ada', payload: '', headers: empty })
    t.same(res.json(), { message: 'The request is invalid.', code: 'validation_failed', errors: [{ path: '', message: 'must be a JSON object' }] }, 'zero bytes are no body')
    // The missing body is found with the schema's checks, so after the path and the headers.
    const headerFirst = await client.request({ method: 'PUT', url: '/users/ada', payload: '', headers: { ...empty, 'if-match': 'bad' } })
    t.same(headerFirst.json().errors.map((e: { path: string }) => e.path), ['/header/if-match'], 'the headers come first')
  })
})

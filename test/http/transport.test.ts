import { gzipSync } from 'node:zlib'
import t from 'tap'
import { eachDatabase } from '../helpers/databases.js'
import { freshClient } from '../helpers/fixtures.js'

const JSON_TYPE = 'application/json; charset=utf-8'

eachDatabase(t, (t, db) => {
  t.test('401: missing, malformed, unknown or revoked key, before anything else', async (t) => {
    const client = await freshClient(t, db)
    await client.createUser({ email: 'ada@example.com', user_id: 'ada' })
    const extra = await client.service.createApiKey({ appId: client.appId })
    t.equal((await client.request({ method: 'GET', url: '/users/ada', headers: { authorization: `bEaReR ${extra.apiKey}` } })).statusCode, 200, 'scheme is case-insensitive')
    await client.service.revokeApiKey({ keyId: extra.keyId })
    const cases: Array<Record<string, string | string[]>> = [
      { authorization: '' },
      { authorization: 'Bearer' },
      { authorization: `Basic ${client.apiKey}` },
      { authorization: 'Bearer klaim_sk_unknown' },
      { authorization: `Bearer ${extra.apiKey}` },
      { authorization: `Bearer ${client.apiKey} extra` },
      // Two fields: Node keeps the first, where a proxy may have checked the last.
      { authorization: [`Bearer ${client.apiKey}`, `Bearer ${client.apiKey}`] },
      { authorization: [`Bearer ${client.apiKey}`, 'Bearer klaim_sk_unknown'] },
      { authorization: ['Bearer klaim_sk_unknown', `Bearer ${client.apiKey}`] }
    ]
    for (const headers of cases) {
      for (const [method, url, payload] of [['GET', '/users/ada'], ['PUT', '/users/ada', '{bad'], ['POST', '/users', 'x'.repeat(70000)]] as const) {
        const res = await client.app.inject({ method, url, payload, headers: { ...headers, 'content-type': 'text/plain' } })
        t.equal(res.statusCode, 401, `${method} ${JSON.stringify(headers)}`)
        t.same(res.json(), { message: 'Missing or invalid API key.', code: 'unauthorized' })
        t.equal(res.headers['www-authenticate'], 'Bearer')
        t.equal(res.headers['content-type'], JSON_TYPE)
      }
    }
    const noHeader = await client.app.inject({ method: 'GET', url: '/users/ada' })
    t.equal(noHeader.statusCode, 401)
  })

  t.test('404 not_found for unknown routes and methods, with or without a key', async (t) => {
    const client = await freshClient(t, db)
    for (const [method, url] of [['DELETE', '/users/x'], ['GET', '/users'], ['GET', '/nope'], ['PUT', '/users'], ['GET', '/users/x/y']] as const) {
      for (const res of [await client.request({ method, url }), await client.app.inject({ method, url })]) {
        t.equal(res.statusCode, 404, `${method} ${url}`)
        t.same(res.json(), { message: 'There is no such route.', code: 'not_found' })
        t.equal(res.headers['content-type'], JSON_TYPE)
      }
    }
  })

  t.test('404 not_found for unknown routes and methods whatever their body: it is not parsed', async (t) => {
    const client = await freshClient(t, db)
    await client.createUser({ email: 'ada@example.com', user_id: 'ada' })
    const bodies: Array<[string, string | undefined]> = [
      ['{', 'application/json'],
      ['', 'application/json'],
      ['{"__proto__": {"x": 1}}', 'application/json'],
      [JSON.stringify({ name: 'x'.repeat(70000) }), 'application/json'],
      ['<x/>', 'application/xml'],
      ['x', undefined]
    ]
    const routes = [['DELETE', '/users/ada'], ['OPTIONS', '/users/ada'], ['POST', '/health'], ['PUT', '/users'], ['POST', '/nope']] as const
    for (const [method, url] of routes) {
      for (const [payload, contentType] of bodies) {
        for (const authorization of [undefined, `Bearer ${client.apiKey}`]) {
          const headers: Record<string, string> = {}
          if (contentType !== undefined) headers['content-type'] = contentType
          if (authorization !== undefined) headers.authorization = authorization
          const res = await client.app.inject({ method, url, payload, headers })
          t.equal(res.statusCode, 404, `${method} ${url}, ${contentType ?? 'no content type'}, ${payload.slice(0, 10)}, ${authorization === undefined ? 'no key' : 'key'}`)
          t.same(res.json(), { message: 'There is no such route.', code: 'not_found' })
        }
      }
    }
    t.equal((await client.request({ method: 'GET', url: '/users/ada' })).statusCode, 200, 'the user is still there')
    // No CORS (README): a browser's preflight is refused, and no answer lets a page read it.
    const origin = 'https://shop.example'
    const preflight = await client.app.inject({ method: 'OPTIONS', url: '/users/ada', headers: { origin, 'access-control-request-method': 'PUT', 'access-control-request-headers': 'authorization' } })
    const read = await client.request({ method: 'GET', url: '/users/ada', headers: { origin } })
    t.equal(preflight.statusCode, 404)
    t.equal(read.statusCode, 200)
    for (const res of [preflight, read]) t.same(Object.keys(res.headers).filter((name) => name.startsWith('access-control-')), [])
  })

  t.test('415, 413 and invalid_json, in the contract\'s order', async (t) => {
    const client = await freshClient(t, db)
    await client.createUser({ email: 'ada@example.com', user_id: 'ada' })
    const put = async (payload: string, contentType?: string) =>
      await client.request({ method: 'PUT', url: '/users/ada', payload, headers: contentType === undefined ? {} : { 'content-type': contentType } })
    const unsupported = await put('{}', 'text/plain')
    t.equal(unsupported.statusCode, 415)
    t.same(unsupported.json(), { message: 'The request body must be application/json (or application/merge-patch+json on PUT and PATCH).', code: 'unsupported_media_type' })
    t.equal((await put('x'.repeat(70000), 'text/plain')).statusCode, 415, '415 before 413')
    t.equal((await put('{}', 'application/json; charset=latin1')).statusCode, 415)
    t.equal((await put('{}', 'application/json; charset=UTF-8')).statusCode, 200)
    // A type refused by its charset, or merge-patch on POST, is known from the headers too.
    const huge = JSON.stringify({ name: 'x'.repeat(70000) })
    t.equal((await put(huge, 'application/json; charset=latin1')).statusCode, 415, '415 before 413: a charset')
    const mergePatchPost = await client.request({ method: 'POST', url: '/users', payload: huge, headers: { 'content-type': 'application/merge-patch+json' } })
    t.equal(mergePatchPost.statusCode, 415, '415 before 413: merge-patch on POST')
    const large = await put(JSON.stringify({ name: 'x'.repeat(70000) }), 'application/json')
    t.equal(large.statusCode, 413)
    t.same(large.json(), { message: 'The request body is larger than 65536 bytes.', code: 'payload_too_large' })
    t.equal((await put(`{"name": "${'x'.repeat(70000)}`, 'application/json')).statusCode, 413, '413 before invalid_json')
    const malformed = await put('{"name": ', 'application/json')
    t.equal(malformed.statusCode, 400)
    t.same(malformed.json(), { message: 'The request body is not valid JSON.', code: 'invalid_json' })
    t.equal((await put('{"name": "ok"}', 'application/json')).statusCode, 200)
    t.equal((await client.request({ method: 'PUT', url: '/users/ada', payload: '{}' })).statusCode, 415, 'a body without a content type')
  })

  t.test('415 for a Content-Type sent twice, whatever the two say: the body\'s type is not known', async (t) => {
    const client = await freshClient(t, db)
    await client.createUser({ email: 'ada@example.com', user_id: 'ada', name: 'Ada' })
    const twice = { message: 'The request must name one Content-Type: it was sent more than once.', code: 'unsupported_media_type' }
    const types = [['application/json', 'application/json'], ['application/json', 'text/plain'], ['text/plain', 'application/json']]
    for (const contentType of types) {
      for (const [method, url, payload] of [['PUT', '/users/ada', { name: 'Eve' }], ['PATCH', '/users/ada', { name: 'Eve' }],
        ['POST', '/users', { email: 'eve@example.com' }], ['POST', '/users/ada', {}]] as const) {
        const res = await client.request({ method, url, payload: JSON.stringify(payload), headers: { 'content-type': [...contentType] } })
        t.equal(res.statusCode, 415, `${method} ${url}, ${contentType.join(' and ')}`)
        t.same(res.json(), twice)
      }
    }
    const huge = JSON.stringify({ name: 'x'.repeat(70000) })
    t.equal((await client.request({ method: 'PUT', url: '/users/ada', payload: huge, headers: { 'content-type': ['application/json', 'application/json'] } })).statusCode, 415, 'before a 413')
    t.equal((await client.request({ method: 'GET', url: '/users/ada' })).json().name, 'Ada', 'nothing was stored')
    t.equal((await client.request({ method: 'GET', url: '/users/eve@example.com' })).statusCode, 404, 'nor created')
    const unauthenticated = await client.request({ method: 'PUT', url: '/users/ada', payload: '{}', headers: { authorization: 'Bearer klaim_sk_unknown', 'content-type': ['application/json', 'text/plain'] } })
    t.equal(unauthenticated.statusCode, 401, 'after the key, as every 415')
    t.equal((await client.request({ method: 'GET', url: '/users/ada', headers: { 'content-type': ['application/json', 'text/plain'] } })).statusCode, 200, 'a read has no body to type')
    t.equal((await client.request({ method: 'PUT', url: '/users/ada', payload: '{"name": "Eve"}', headers: { 'content-type': 'application/json' } })).statusCode, 200, 'once is enough')
  })

  t.test('415 for a compressed body: it is never decompressed, nor read as if it were not', async (t) => {
    const client = await freshClient(t, db)
    await client.createUser({ email: 'ada@example.com', user_id: 'ada', name: 'Ada' })
    const body = JSON.stringify({ name: 'Zip' })
    const compressed = { message: 'The request body must not be compressed: Content-Encoding is not supported.', code: 'unsupported_media_type' }
    const cases: Array<[string, string | Buffer]> = [
      ['gzip', gzipSync(body)],
      ['gzip', body],
      ['br', body],
      ['identity, gzip', body],
      ['gzip', gzipSync(JSON.stringify({ name: 'x'.repeat(70000) }))],
      ['gzip', JSON.stringify({ name: 'x'.repeat(70000) })]
    ]
    for (const [encoding, payload] of cases) {
      for (const method of ['PUT', 'PATCH'] as const) {
        const res = await client.request({ method, url: '/users/ada', payload, headers: { 'content-type': 'application/json', 'content-encoding': encoding } })
        t.equal(res.statusCode, 415, `${method}, ${encoding}, ${payload.length} bytes`)
        t.same(res.json(), compressed)
      }
    }
    const created = await client.request({ method: 'POST', url: '/users', payload: JSON.stringify({ email: 'zip@example.com' }), headers: { 'content-type': 'application/json', 'content-encoding': 'deflate' } })
    t.equal(created.statusCode, 415)
    t.equal((await client.request({ method: 'GET', url: '/users/ada' })).json().name, 'Ada', 'nothing was stored')
    t.equal((await client.request({ method: 'GET', url: '/users/zip@example.com' })).statusCode, 404, 'nor created')
    // Without a body, there is nothing to decode; `identity` is no coding at all.
    t.equal((await client.request({ method: 'GET', url: '/users/ada', headers: { 'content-encoding': 'gzip' } })).statusCode, 200)
    for (const encoding of ['identity', ' Identity ']) {
      const res = await client.request({ method: 'PUT', url: '/users/ada', payload: body, headers: { 'content-type': 'application/json', 'content-encoding': encoding } })
      t.equal(res.statusCode, 200, encoding)
    }
  })

  t.test('a body that is not valid UTF-8 is invalid_json: its bytes are never replaced and stored', async (t) => {
    const client = await freshClient(t, db)
    await client.createUser({ email: 'ada@example.com', user_id: 'ada', name: 'Ada' })
    const inName = (bytes: number[]) => Buffer.concat([Buffer.from('{"name": "'), Buffer.from(bytes), Buffer.from('"}')])
    const cases: Array<[string, Buffer]> = [
      ['bytes that are never UTF-8', inName([0xff, 0xfe])],
      ['a lone surrogate encoded as bytes', inName([0xed, 0xa0, 0x80])],
      ['a character cut short', inName([0xc3])],
      ['an overlong encoding of "/"', inName([0xc0, 0xaf])]
    ]
    for (const [what, payload] of cases) {
      for (const method of ['PUT', 'PATCH'] as const) {
        const res = await client.request({ method, url: '/users/ada', payload, headers: { 'content-type': 'application/json' } })
        t.equal(res.statusCode, 400, `${method}: ${what}`)
        t.same(res.json(), { message: 'The request body is not valid JSON.', code: 'invalid_json' })
      }
    }
    const created = await client.request({ method: 'POST', url: '/users', payload: Buffer.from('{"email": "b\xffb@example.com"}', 'latin1'), headers: { 'content-type': 'application/json' } })
    t.equal(created.statusCode, 400)
    t.equal(created.json().code, 'invalid_json')
    t.equal((await client.request({ method: 'GET', url: '/users/ada' })).json().name, 'Ada', 'nothing was stored')
    const valid = await client.request({ method: 'PUT', url: '/users/ada', payload: inName([0xc3, 0xa9, 0xf0, 0x9f, 0x98, 0x80]), headers: { 'content-type': 'application/json' } })
    t.equal(valid.json().name, 'é😀', 'valid multi-byte characters still pass')
  })

  t.test('health, ready, request ids and content types', async (t) => {
    const client = await freshClient(t, db)
    const health = await client.app.inject({ method: 'GET', url: '/health' })
    t.equal(health.statusCode, 200)
    t.same(health.json(), { status: 'ok' })
    t.equal(health.headers['content-type'], JSON_TYPE)
    const ready = await client.app.inject({ method: 'GET', url: '/ready' })
    t.same(ready.json(), { status: 'ready' })
    const own = await client.app.inject({ method: 'GET', url: '/users/x', headers: { 'x-request-id': 'abc.DEF:1-2_3' } })
    t.equal(own.headers['x-request-id'], 'abc.DEF:1-2_3', 'a 401 carries the client\'s id')
    const bad = await client.app.inject({ method: 'GET', url: '/nope', headers: { 'x-request-id': 'has space' } })
    t.match(bad.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'an unusable id is replaced')
    const long = await client.app.inject({ method: 'GET', url: '/health', headers: { 'x-request-id': 'x'.repeat(129) } })
    t.not(long.headers['x-request-id'], 'x'.repeat(129))
  })

  t.test('a malformed percent-encoding or an overlong path is a 400, not a 500, with its request id', async (t) => {
    const client = await freshClient(t, db)
    const res = await client.request({ method: 'GET', url: '/users/%E0%A4%A', headers: { 'x-request-id': 'bad-url' } })
    t.equal(res.statusCode, 400)
    t.same(res.json(), { message: 'The URL is not valid.', code: 'invalid_url' })
    t.equal(res.headers['x-request-id'], 'bad-url')
    t.equal(res.headers['content-type'], JSON_TYPE)
    const long = await client.put('😀'.repeat(300), { name: 'x' })
    t.equal(long.statusCode, 400)
    t.same(long.json().errors, [{ path: '/path/user_id', message: 'must be a string of 1 to 255 characters, without control characters or leading or trailing white space' }])
    t.match(long.headers['x-request-id'], /^[0-9a-f-]{36}$/)
  })
})

import t from 'tap'
import { buildHttpApp } from '../../src/adapters/http/app.js'
import type { CreateUserCommand } from '../../src/application/create-user.js'
import type { UnitOfWork } from '../../src/application/ports.js'
import { eachDatabase } from '../helpers/databases.js'
import { clientFor, freshClient, freshService } from '../helpers/fixtures.js'

const KLAIM_ID = /^\d{13}_[A-Za-z0-9]{5}$/

eachDatabase(t, (t, db) => {
  t.test('201: created with Location, ETag and the full resource', async (t) => {
    const client = await freshClient(t, db)
    const res = await client.createUser({ email: '  Ada@Example.com ', user_id: 'a b/ü', name: ' Ada ', metadata: { plan: 'pro', drop: null, nested: { x: null, y: 1 } } })
    t.equal(res.statusCode, 201)
    t.equal(res.headers.location, '/users/a%20b%2F%C3%BC')
    const body = res.json()
    t.match(body, { message: 'resource created successfully', user_id: 'a b/ü', email: 'Ada@Example.com', name: 'Ada', credit_balance: 0, acquisition_source: 'api' })
    t.same(body.metadata, { plan: 'pro', nested: { y: 1 } }, 'nulls are dropped')
    t.match(body.klaim_id, KLAIM_ID)
    t.equal(body.created_at, body.updated_at)
    t.equal(String(body.created_at), body.klaim_id.split('_')[0])
    t.equal(res.headers.etag, `"${body.klaim_id}.1"`)
    t.same(Object.keys(body).sort(), ['acquisition_source', 'created_at', 'credit_balance', 'email', 'klaim_id', 'message', 'metadata', 'name', 'updated_at', 'user_id'])
  })

  t.test('user_id defaults to klaim_id; userId is an alias; both must agree', async (t) => {
    const client = await freshClient(t, db)
    const plain = (await client.createUser({ email: 'a@example.com' })).json()
    t.equal(plain.user_id, plain.klaim_id)
    t.equal(plain.name, null)
    t.same(plain.metadata, {})
    t.equal((await client.createUser({ email: 'b@example.com', userId: 'bee' })).json().user_id, 'bee')
    t.equal((await client.createUser({ email: 'c@example.com', userId: 'sea', user_id: 'sea' })).statusCode, 201)
    const clash = await client.createUser({ email: 'd@example.com', userId: 'x', user_id: 'y' })
    t.equal(clash.statusCode, 400)
    t.same(clash.json(), { message: 'The request is invalid.', code: 'validation_failed', errors: [{ path: '/userId', message: 'must equal user_id when both are sent' }] })
    t.equal((await client.createUser({ email: 'e@example.com', metadata: null })).json().metadata.constructor, Object, 'metadata null is {}')
  })

  t.test('401 for a create whose app is deleted after its key was checked (apps delete meanwhile)', async (t) => {
    const service = await freshService(t, db)
    // The deletion lands between the key's check and the insert (once: a keyed create may run again).
    const deleted = new Set<string>()
    const racing = {
      ...service,
      createUser: async (command: CreateUserCommand, uow?: UnitOfWork) => {
        if (!deleted.has(command.appId)) { deleted.add(command.appId); await service.deleteApp({ appId: command.appId }) }
        return await service.createUser(command, uow)
      }
    }
    const app = await buildHttpApp({ service: racing })
    t.teardown(async () => await app.close())
    for (const headers of [{}, { 'idempotency-key': 'k1' }]) {
      const { appId, apiKey } = await service.createApp({ name: 'leaving' })
      const res = await clientFor(app, service, appId, apiKey).request({ method: 'POST', url: '/users', payload: { email: 'ada@example.com' }, headers })
      t.equal(res.statusCode, 401, 'not a 400 naming an appId the client never sent')
      t.same(res.json(), { message: 'Missing or invalid API key.', code: 'unauthorized' })
      t.equal(res.headers['www-authenticate'], 'Bearer')
    }
  })

  t.test('400: email missing says "missing required fields" and lists the rest', async (t) => {
    const client = await freshClient(t, db)
    const res = await client.createUser({ name: 42 })
    t.equal(res.statusCode, 400)
    t.same(res.json(), {
      message: 'missing required fields',
      code: 'validation_failed',
      errors: [{ path: '/email', message: 'is required' }, { path: '/name', message: 'must be a string of 1 to 200 characters (after trimming), or null' }]
    })
    const bad = await client.createUser({ email: 'nope', foo: 1 })
    t.equal(bad.json().message, 'The request is invalid.')
    t.same(bad.json().errors.map((e: { path: string }) => e.path).sort(), ['/email', '/foo'])
    const meta = await client.createUser({ email: 'a@example.com', metadata: { a: { b: { c: { d: { e: { f: 1 } } } } } } })
    t.same(meta.json().errors, [{ path: '/metadata', message: 'metadata must be nested at most 5 levels deep' }])
    t.equal((await client.request({ method: 'POST', url: '/users', payload: { email: 'a@example.com' }, headers: { 'content-type': 'application/merge-patch+json' } })).statusCode, 415, 'merge-patch is for PUT and PATCH')
  })

  t.test('409 on create: user_id first, then email (case-insensitive)', async (t) => {
    const client = await freshClient(t, db)
    await client.createUser({ email: 'ada@example.com', user_id: 'ada' })
    t.same((await client.createUser({ email: 'ADA@example.com', user_id: 'ada' })).json(), { message: 'User ID already exists', code: 'user_id_taken' })
    const email = await client.createUser({ email: 'ADA@example.com', user_id: 'other' })
    t.equal(email.statusCode, 409)
    t.same(email.json(), { message: 'Email already exists', code: 'email_taken' })
    t.equal((await client.request({ method: 'GET', url: '/users/other' })).statusCode, 404, 'nothing stored')
  })

  t.test('GET and the POST read alias', async (t) => {
    const client = await freshClient(t, db)
    const created = (await client.createUser({ email: 'ada@example.com', user_id: 'ada' })).json()
    const expected = { ...created, message: 'fetch resource successfully' }
    const get = await client.request({ method: 'GET', url: '/users/ada' })
    t.equal(get.statusCode, 200)
    t.same(get.json(), expected)
    t.equal(get.headers.etag, `"${created.klaim_id}.1"`)
    t.equal(get.headers['cache-control'], 'private, no-cache', 'kept by the client\'s cache only, and asked again before each use')
    t.same((await client.request({ method: 'POST', url: '/users/ada' })).json(), expected)
    t.same((await client.request({ method: 'POST', url: '/users/ada', payload: {} })).json(), expected)
    // Zero bytes are no body, as a client that always sends a JSON Content-Type sends them.
    const empty = await client.request({ method: 'POST', url: '/users/ada', payload: '', headers: { 'content-type': 'application/json', 'content-length': '0' } })
    t.equal(empty.statusCode, 200, 'an empty JSON body is no body')
    t.same(empty.json(), expected)
    for (const payload of ['{"name": "x"}', 'null', '[]']) {
      const res = await client.request({ method: 'POST', url: '/users/ada', payload, headers: { 'content-type': 'application/json' } })
      t.equal(res.statusCode, 400, payload)
      t.equal(res.json().code, 'validation_failed')
    }
    // If-None-Match: a 304 while the client's copy is current; the POST alias answers 412.
    const etag = get.headers.etag as string
    for (const current of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      const notModified = await client.request({ method: 'GET', url: '/users/ada', headers: { 'if-none-match': current } })
      t.equal(notModified.statusCode, 304, current)
      t.equal(notModified.body, '', 'no body')
      t.equal(notModified.headers.etag, etag)
      t.equal(notModified.headers['content-type'], 'application/json; charset=utf-8')
      t.equal(notModified.headers['cache-control'], 'private, no-cache')
    }
    const head = await client.request({ method: 'HEAD', url: '/users/ada', headers: { 'if-none-match': etag } })
    t.equal(head.statusCode, 304)
    const changed = await client.request({ method: 'GET', url: '/users/ada', headers: { 'if-none-match': '"other", W/"older"' } })
    t.equal(changed.statusCode, 200)
    t.same(changed.json(), expected)
    const post = await client.request({ method: 'POST', url: '/users/ada', headers: { 'if-none-match': etag } })
    t.equal(post.statusCode, 412)
    t.same(post.json(), { message: 'The user matches If-None-Match.', code: 'precondition_failed' })
    t.equal(post.headers.etag, undefined)
    t.equal(post.headers['cache-control'], undefined, 'an error carries no user')
    t.equal((await client.request({ method: 'POST', url: '/users/ada', headers: { 'if-none-match': '"other"' } })).statusCode, 200)
    t.equal((await client.request({ method: 'GET', url: '/users/nobody', headers: { 'if-none-match': '*' } })).statusCode, 404, 'a missing user is a 404 whatever it says')
    const bad = await client.request({ method: 'GET', url: '/users/nobody', headers: { 'if-none-match': 'not-a-tag' } })
    t.same(bad.json(), { message: 'The request is invalid.', code: 'validation_failed', errors: [{ path: '/header/if-none-match', message: 'must be * or a list of entity tags' }] }, 'a bad value is a 400, before the lookup')
    for (const payload of ['null', '{"name": "x"}', '{"a": 1, "a": 1}']) {
      const badFirst = await client.request({ method: 'POST', url: '/users/ada', payload, headers: { 'content-type': 'application/json', 'if-none-match': 'not-a-tag' } })
      t.same(badFirst.json().errors, [{ path: '/header/if-none-match', message: 'must be * or a list of entity tags' }], `the headers before the body ${payload}`)
    }

    const missing = await client.request({ method: 'GET', url: '/users/nobody' })
    t.equal(missing.statusCode, 404)
    t.same(missing.json(), { message: 'Can not find user with the given user_id.', code: 'user_not_found' })
    t.equal((await client.request({ method: 'POST', url: '/users/nobody' })).statusCode, 404)
  })

  t.test('If-Match on a read: a 412 when no tag matches, as for an update (RFC 9110 §13.1.1)', async (t) => {
    const client = await freshClient(t, db)
    const created = await client.createUser({ email: 'ada@example.com', user_id: 'ada' })
    const etag = created.headers.etag as string
    for (const current of [etag, '*', `"other", ${etag}`]) {
      for (const method of ['GET', 'HEAD', 'POST'] as const) {
        const res = await client.request({ method, url: '/users/ada', headers: { 'if-match': current } })
        t.equal(res.statusCode, 200, `${method} ${current}`)
        t.equal(res.headers.etag, etag)
      }
    }
    const modified = { message: 'The user was modified since it was read.', code: 'precondition_failed' }
    // Another tag, the current one weak (If-Match compares strongly), an older version.
    for (const stale of ['"other"', `W/${etag}`, `"${etag.slice(1, -2)}0"`]) {
      for (const method of ['GET', 'HEAD', 'POST'] as const) {
        const res = await client.request({ method, url: '/users/ada', headers: { 'if-match': stale } })
        t.equal(res.statusCode, 412, `${method} ${stale}`)
        t.equal(res.headers.etag, undefined, 'an error carries no user')
        t.equal(res.headers['cache-control'], undefined)
        if (method !== 'HEAD') t.same(res.json(), modified)
      }
    }
    // If-Match first: only when it holds does If-None-Match decide.
    t.equal((await client.request({ method: 'GET', url: '/users/ada', headers: { 'if-match': '"other"', 'if-none-match': etag } })).statusCode, 412)
    t.equal((await client.request({ method: 'GET', url: '/users/ada', headers: { 'if-match': etag, 'if-none-match': etag } })).statusCode, 304)
    t.same((await client.request({ method: 'POST', url: '/users/ada', headers: { 'if-match': etag, 'if-none-match': etag } })).json().message, 'The user matches If-None-Match.')
    t.equal((await client.request({ method: 'GET', url: '/users/nobody', headers: { 'if-match': '"other"' } })).statusCode, 404, 'a missing user is a 404 whatever it says')
    const bad = await client.request({ method: 'GET', url: '/users/nobody', headers: { 'if-match': 'not-a-tag', 'if-none-match': 'nor-this' } })
    t.same(bad.json().errors, [
      { path: '/header/if-match', message: 'must be * or a list of entity tags' },
      { path: '/header/if-none-match', message: 'must be * or a list of entity tags' }
    ], 'malformed values are a 400 naming each, before the lookup')
    const badFirst = await client.request({ method: 'POST', url: '/users/ada', payload: '{"name": "x"}', headers: { 'content-type': 'application/json', 'if-match': 'not-a-tag' } })
    t.same(badFirst.json().errors, [{ path: '/header/if-match', message: 'must be * or a list of entity tags' }], 'the headers before the body')
    const keyed = await client.request({ method: 'GET', url: '/users/ada', headers: { 'idempotency-key': 'é' } })
    t.equal(keyed.statusCode, 200, 'a read takes no Idempotency-Key, and ignores one')
  })
})

import t from 'tap'
import { EmailTakenError, PreconditionFailedError, UserIdTakenError, UserNotFoundError, ValidationError } from '../../src/index.js'
import { eachDatabase } from '../helpers/databases.js'
import { freshService } from '../helpers/fixtures.js'

eachDatabase(t, (t, db) => {
  t.test('in-process use cases speak camelCase and return plain users with their etag', async (t) => {
    let now = 1_753_306_133_860
    const users = await freshService(t, db, { clock: { now: () => now } })
    const { appId, name, apiKey } = await users.createApp({ name: ' shop ' })
    t.equal(name, 'shop')
    t.match(apiKey, /^klaim_sk_[A-Za-z0-9_-]{43}$/)
    t.equal((await users.authenticate(apiKey))?.appId, appId)
    const u = await users.createUser({ appId, email: 'ada@example.com', userId: 'ada' })
    t.same(u, {
      klaimId: u.klaimId,
      userId: 'ada',
      email: 'ada@example.com',
      name: null,
      metadata: {},
      creditBalance: 0,
      acquisitionSource: 'api',
      createdAt: now,
      updatedAt: now,
      etag: `"${u.klaimId}.1"`
    })
    t.match(u.klaimId, new RegExp(`^${now}_[A-Za-z0-9]{5}$`))
    now += 1000
    const updated = await users.updateUserProfile({ appId, userId: 'ada', changes: { name: 'Ada', metadata: { plan: 'pro' } }, ifMatch: u.etag })
    t.match(updated, { name: 'Ada', metadata: { plan: 'pro' }, updatedAt: now, createdAt: now - 1000, etag: `"${u.klaimId}.2"` })
    t.same(await users.getUser({ appId, userId: 'ada' }), updated)
    const renamed = await users.updateUserProfile({ appId, userId: 'ada', changes: { userId: 'lovelace' } })
    t.equal(renamed.userId, 'lovelace')
  })

  t.test('failures throw the exported classes with the HTTP codes', async (t) => {
    const users = await freshService(t, db)
    const { appId } = await users.createApp({ name: 'app' })
    const u = await users.createUser({ appId, email: 'ada@example.com', userId: 'ada' })
    await users.createUser({ appId, email: 'bob@example.com', userId: 'bob' })
    await t.rejects(users.getUser({ appId, userId: 'nobody' }), { constructor: UserNotFoundError, code: 'user_not_found' })
    await t.rejects(users.getUser({ appId: 'app_unknown', userId: 'ada' }), { code: 'user_not_found' }, 'an unknown app reads as a missing user')
    await t.rejects(users.updateUserProfile({ appId: 'app_unknown', userId: 'ada', changes: {} }), { code: 'user_not_found' })
    await t.rejects(users.createUser({ appId: 'app_unknown', email: 'x@example.com' }), { constructor: ValidationError, code: 'validation_failed', errors: [{ path: '/appId' }] })
    await t.rejects(users.updateUserProfile({ appId, userId: 'ada', changes: { userId: 'bob' } }), { constructor: UserIdTakenError, code: 'user_id_taken' })
    await t.rejects(users.updateUserProfile({ appId, userId: 'ada', changes: { email: 'BOB@example.com' } }), { constructor: EmailTakenError, code: 'email_taken' })
    await t.rejects(users.updateUserProfile({ appId, userId: 'ada', changes: { name: 'x' }, ifMatch: '"stale"' }), { constructor: PreconditionFailedError, code: 'precondition_failed' })
    await t.rejects(users.updateUserProfile({ appId, userId: 'ada', changes: { user_id: 'x', name: 1 } }), { code: 'validation_failed', errors: [{ path: '/user_id' }, { path: '/name' }] })
    await t.rejects(users.updateUserProfile({ appId, userId: 'ada', changes: {}, ifMatch: 'nope' }), { errors: [{ path: '/ifMatch' }] })
    await t.rejects(users.updateUserProfile({ appId, userId: ' ada', changes: {} }), { errors: [{ path: '/userId' }] })
    await t.rejects(users.createApp({ name: '  ' }), { code: 'validation_failed', errors: [{ path: '/name' }] })
    await t.rejects(users.createApiKey({ appId: 'app_unknown' }), { code: 'validation_failed' })
    t.same(await users.getUser({ appId, userId: 'ada' }), u, 'nothing changed')
  })

  t.test('a drawn klaim_id that is taken is drawn again, never reported', async (t) => {
    let draws = 0
    // The first two draws repeat the same suffix; the third differs.
    const ids = { pick: (n: number) => (draws++ < 10 ? 0 : draws % n), opaque: (p: string) => `${p}${draws++}` }
    const users = await freshService(t, db, { clock: { now: () => 1_000 }, ids })
    const { appId } = await users.createApp({ name: 'app' })
    draws = 0
    const first = await users.createUser({ appId, email: 'a@example.com' })
    draws = 0
    const second = await users.createUser({ appId, email: 'b@example.com' })
    t.equal(first.klaimId, '1000_AAAAA')
    t.not(second.klaimId, first.klaimId)
    draws = 0
    const third = await users.createUser({ appId, email: 'c@example.com', userId: '1000_AAAAA' }).catch((e: Error) => e)
    t.match(third, { code: 'user_id_taken' }, 'a user_id the client chose is a real conflict')
  })

  t.test('keys: revocation holds from the next call; listings', async (t) => {
    const users = await freshService(t, db)
    const { appId, apiKey } = await users.createApp({ name: 'app' })
    const second = await users.createApiKey({ appId })
    t.same(await users.authenticate(second.apiKey), { appId, keyId: second.keyId })
    t.ok(await users.revokeApiKey({ keyId: second.keyId }))
    t.equal(await users.authenticate(second.apiKey), undefined)
    t.equal((await users.authenticate(apiKey))?.appId, appId)
    t.equal(await users.authenticate('klaim_sk_nope'), undefined)
    t.equal((await users.listApiKeys({ appId })).length, 2)
    t.same((await users.listApps()).map((a) => a.name), ['app'])
  })
})

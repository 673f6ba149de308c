import t from 'tap'
import { EmailTakenError, PreconditionFailedError, UserIdTakenError, UserNotFoundError, ValidationError } from '../../src/index.js'
import type { UnitOfWork } from '../../src/application/ports.js'
import { databases, eachDatabase } from '../helpers/databases.js'
import { freshPersistence, freshService } from '../helpers/fixtures.js'
import { openPersistence, type Persistence } from '../../src/adapters/persistence/open-persistence.js'
import { sql } from '../../src/adapters/persistence/kysely.js'
import { SnapshotEnded } from '../../src/adapters/persistence/exported.js'
import { endWhenIdle, snapshotOpener, type Schedule } from '../../src/adapters/persistence/read-snapshot.js'
import { sampleUser } from '../helpers/users.js'
import { exportUsers } from '../../src/application/export-users.js'
import { toProfile, type User, type UserProfile } from '../../src/domain/user.js'

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
    const notAnId = { toString: () => appId } as unknown as string
    await t.rejects(users.getUser({ appId: notAnId, userId: 'ada' }), { constructor: UserNotFoundError, code: 'user_not_found' }, 'a non-string appId names no app')
    await t.rejects(users.updateUserProfile({ appId: notAnId, userId: 'ada', changes: {} }), { constructor: UserNotFoundError, code: 'user_not_found' })
    await t.rejects(users.createUser({ appId: 'app_unknown', email: 'x@example.com' }), { constructor: ValidationError, code: 'validation_failed', errors: [{ path: '/appId' }] })
    await t.rejects(users.updateUserProfile({ appId, userId: 'ada', changes: { userId: 'bob' } }), { constructor: UserIdTakenError, code: 'user_id_taken' })
    await t.rejects(users.updateUserProfile({ appId, userId: 'ada', changes: { email: 'BOB@example.com' } }), { constructor: EmailTakenError, code: 'email_taken' })
    await t.rejects(users.updateUserProfile({ appId, userId: 'ada', changes: { name: 'x' }, ifMatch: '"stale"' }), { constructor: PreconditionFailedError, code: 'precondition_failed' })
    await t.rejects(users.updateUserProfile({ appId, userId: 'ada', changes: { name: 'x' }, ifNoneMatch: `W/${u.etag}` }), { constructor: PreconditionFailedError, code: 'precondition_failed', message: 'The user matches If-None-Match.' })
    await t.rejects(users.updateUserProfile({ appId, userId: 'ada', changes: {}, ifNoneMatch: 'nope' }), { constructor: ValidationError, errors: [{ path: '/ifNoneMatch' }] })
    await t.rejects(users.updateUserProfile({ appId, userId: 'ada', changes: { user_id: 'x', name: 1 } }), { code: 'validation_failed', errors: [{ path: '/user_id' }, { path: '/name' }] })
    await t.rejects(users.updateUserProfile({ appId, userId: 'ada', changes: {}, ifMatch: 'nope' }), { errors: [{ path: '/ifMatch' }] })
    await t.rejects(users.updateUserProfile({ appId, userId: 'ada', changes: {}, ifMatch: 5 as unknown as string }), { constructor: ValidationError, errors: [{ path: '/ifMatch' }] }, 'plain JavaScript callers too')
    await t.rejects(users.updateUserProfile({ appId, userId: ' ada', changes: {} }), { errors: [{ path: '/userId' }] })
    await t.rejects(users.createApp({ name: '  ' }), { code: 'validation_failed', errors: [{ path: '/name' }] })
    await t.rejects(users.createApiKey({ appId: 'app_unknown' }), { code: 'validation_failed' })
    t.same(await users.getUser({ appId, userId: 'ada' }), u, 'nothing changed')
  })

  t.test('an app and its first key are stored together or not at all', async (t) => {
    // Every key id drawn is the same, so the second app's key cannot be stored.
    const ids = { pick: () => 0, opaque: (prefix: string) => prefix === 'key_' ? 'key_same' : `${prefix}${Math.random()}` }
    const users = await freshService(t, db, { ids })
    const first = await users.createApp({ name: 'one' })
    await t.rejects(users.createApp({ name: 'two' }))
    t.same((await users.listApps()).map((app) => app.name), ['one'], 'no app is left without its key')
    t.equal((await users.authenticate(first.apiKey))?.appId, first.appId)
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
    await t.rejects(users.listApiKeys({ appId: 'app_unknown' }), { code: 'validation_failed', errors: [{ path: '/appId' }] }, 'an unknown app is not an app without keys')
    await t.rejects(users.createApiKey({ appId: 5 as unknown as string }), { code: 'validation_failed', errors: [{ path: '/appId' }] })
    t.same((await users.listApps()).map((a) => a.name), ['app'])
  })

  t.test('deleteUser erases one user of its app; an update that read the user before answers 404', async (t) => {
    const users = await freshService(t, db)
    const { appId, apiKey } = await users.createApp({ name: 'app' })
    const other = await users.createApp({ name: 'other' })
    const ada = await users.createUser({ appId, email: 'ada@example.com', userId: 'ada', name: 'Ada' })
    const bob = await users.createUser({ appId, email: 'bob@example.com', userId: 'bob' })
    const otherAda = await users.createUser({ appId: other.appId, email: 'ada@example.com', userId: 'ada' })
    const snapshot = (await users.authenticate(apiKey, 'ada'))?.snapshot
    await t.rejects(users.deleteUser({ appId, userId: ' ada' }), { constructor: ValidationError, errors: [{ path: '/userId' }] })
    await t.rejects(users.deleteUser({ appId: 5 as unknown as string, userId: 'ada' }), { constructor: UserNotFoundError, code: 'user_not_found' }, 'a non-string appId names no app')
    t.same(await users.deleteUser({ appId, userId: 'ada' }), { user: ada, storedResponses: 0 }, 'the user as it was')
    await t.rejects(users.deleteUser({ appId, userId: 'ada' }), { constructor: UserNotFoundError, code: 'user_not_found' })
    await t.rejects(users.getUser({ appId, userId: 'ada' }), { constructor: UserNotFoundError, code: 'user_not_found' })
    await t.rejects(users.updateUserProfile({ appId, userId: 'ada', changes: { name: 'late' }, snapshot }), { constructor: UserNotFoundError, code: 'user_not_found' },
      'the write from the read before the delete is refused, and the update reads again')
    t.same(await users.getUser({ appId, userId: 'bob' }), bob)
    t.same(await users.getUser({ appId: other.appId, userId: 'ada' }), otherAda, 'another app\'s user of the same user_id stays')
    const again = await users.createUser({ appId, email: 'ada@example.com', userId: 'ada' })
    t.not(again.klaimId, ada.klaimId, 'a new user, with the user_id and email free again')

    // Under an Idempotency-Key too: the held write from the earlier read is refused at the end,
    // the transaction runs again and finds no user, and the 404 is the stored answer.
    await users.createUser({ appId, email: 'cy@example.com', userId: 'cy' })
    const stale = (await users.authenticate(apiKey, 'cy'))?.snapshot
    t.ok(stale?.user, 'read before the delete')
    await users.deleteUser({ appId, userId: 'cy' })
    const request = { scope: 'test', key: 'k', fingerprint: 'f' }
    const work = async (uow: UnitOfWork) => {
      const user = await users.updateUserProfile({ appId, userId: 'cy', changes: { name: 'late' }, snapshot: stale }, uow)
      return { status: 200, body: JSON.stringify(user), headers: {} }
    }
    const notFound = (error: unknown) => error instanceof UserNotFoundError ? { status: 404, body: 'gone', headers: {} } : undefined
    await t.rejects(users.idempotent(request, work, notFound), { constructor: UserNotFoundError, code: 'user_not_found' })
    t.match(await users.idempotent(request, work, notFound), { response: { status: 404, body: 'gone' }, replayed: true })
    await t.rejects(users.getUser({ appId, userId: 'cy' }), { constructor: UserNotFoundError, code: 'user_not_found' })
  })

  t.test('deleteUser also deletes the answers stored under the app\'s keys that carry the user, whatever its user_id was', async (t) => {
    const users = await freshService(t, db)
    const { appId, apiKey } = await users.createApp({ name: 'app' })
    const second = await users.createApiKey({ appId })
    const other = await users.createApp({ name: 'other' })
    const keyId = async (key: string) => (await users.authenticate(key))?.keyId ?? ''
    const [first, secondId, otherId] = [await keyId(apiKey), second.keyId, await keyId(other.apiKey)]
    // Answers as the HTTP routes store them: the user's JSON, under the API key's id.
    const store = async (scope: string, key: string, work: (uow: UnitOfWork) => Promise<unknown>) =>
      await users.idempotent({ scope, key, fingerprint: key }, async (uow) => ({ status: 200, body: JSON.stringify(await work(uow)), headers: {} }), () => undefined)
    await store(first, 'create', async (uow) => await users.createUser({ appId, email: 'ada@example.com', userId: 'ada' }, uow))
    await store(secondId, 'rename', async (uow) => await users.updateUserProfile({ appId, userId: 'ada', changes: { userId: 'lovelace' } }, uow))
    await store(first, 'bob', async (uow) => await users.createUser({ appId, email: 'bob@example.com', userId: 'bob' }, uow))
    await store(otherId, 'ada', async (uow) => await users.createUser({ appId: other.appId, email: 'ada@example.com', userId: 'ada' }, uow))
    await users.revokeApiKey({ keyId: secondId })

    const { storedResponses } = await users.deleteUser({ appId, userId: 'lovelace' })
    t.equal(storedResponses, 2, 'the create and the rename, the latter under a key revoked since')
    const replay = async (scope: string, key: string) => (await store(scope, key, async () => ({ ran: true }))).replayed
    t.notOk(await replay(first, 'create'), 'a retry of the create runs again')
    t.notOk(await replay(secondId, 'rename'))
    t.ok(await replay(first, 'bob'), 'another user\'s answer stays')
    t.ok(await replay(otherId, 'ada'), 'and another app\'s')
  })

  t.test('exportUsers: every user of the app, in user_id order, however many pages', async (t) => {
    const persistence = await freshPersistence(t, db)
    const { apps, users, transactor } = persistence
    for (const appId of ['app1', 'app2']) await apps.insertApp({ appId, name: appId, createdAt: 1 })
    const ids = ['u3', 'u1', 'u5', 'u2', 'u4', 'u6']
    for (const [i, userId] of ids.entries()) await users.insert(sampleUser({ appId: 'app1', klaimId: `k${i}`, userId, email: `${userId}@example.com` }))
    await users.insert(sampleUser({ appId: 'app2', klaimId: 'other', userId: 'u0', email: 'u0@example.com' }))
    const all = async (appId: string, pageSize: number) => {
      const listed: UserProfile[] = []
      for await (const user of exportUsers({ apps, transactor }, pageSize)({ appId })) listed.push(user)
      return listed
    }
    const two = await all('app1', 2)
    t.same(two.map((u) => u.userId), ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'], 'pages of 2: three full ones, then an empty one')
    t.same(two[0], toProfile((await users.findByUserId('app1', 'u1')) as User), 'each user as getUser returns it')
    t.same((await all('app1', 4)).map((u) => u.userId), ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'], 'a short last page')
    t.same((await all('app2', 1000)).map((u) => u.userId), ['u0'])
    await t.rejects(all('nope', 2), { constructor: ValidationError, errors: [{ path: '/appId' }] }, 'an unknown app is not an app without users')
    await t.rejects(all(5 as unknown as string, 2), { constructor: ValidationError, errors: [{ path: '/appId' }] })
  })

  t.test('exportUsers: one snapshot, taken at its first page; writes made meanwhile go on, and are not in it', async (t) => {
    const persistence = await freshPersistence(t, db)
    const { apps, users, transactor } = persistence
    await apps.insertApp({ appId: 'app1', name: 'app1', createdAt: 1 })
    const before = new Map<string, User>()
    for (const [i, userId] of ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'].entries()) {
      const user = sampleUser({ appId: 'app1', klaimId: `k${i}`, userId, email: `${userId}@example.com` })
      await users.insert(user)
      before.set(userId, user)
    }
    const exported = exportUsers({ apps, transactor }, 2)({ appId: 'app1' })
    const listed = [(await exported.next()).value as UserProfile]
    // Pages of two: the export's next pages are after 'u2'. Paged outside one snapshot, it would
    // miss u5 (renamed before the page it was on) and u6 (deleted), list u7 (created), and u4
    // with its new name.
    const u4 = before.get('u4') as User
    await users.update({ ...u4, name: 'New name', updatedAt: 2, version: 2 }, u4)
    const u5 = before.get('u5') as User
    await users.update({ ...u5, userId: 'a5', updatedAt: 2, version: 2 }, u5)
    t.ok(await users.deleteByUserId('app1', 'u6'))
    await users.insert(sampleUser({ appId: 'app1', klaimId: 'k7', userId: 'u7', email: 'u7@example.com' }))
    for await (const user of exported) listed.push(user)
    t.same(listed, [...before.values()].map(toProfile), 'the six users, each as it was')
    t.equal(await snapshotHeld(persistence), false, 'the export ended its snapshot')
    const again: string[] = []
    for await (const user of exportUsers({ apps, transactor }, 2)({ appId: 'app1' })) again.push(user.userId)
    t.same(again, ['a5', 'u1', 'u2', 'u3', 'u4', 'u7'], 'a new export sees the writes')
    for await (const user of exportUsers({ apps, transactor }, 2)({ appId: 'app1' })) if (user.userId === 'u1') break
    t.equal(await snapshotHeld(persistence), false, 'one stopped early ends it too')
  })

  t.test('deleteApp: the app\'s keys fail from then on, its users are gone, another app keeps its own', async (t) => {
    const users = await freshService(t, db, { clock: { now: () => 1_000 } })
    const { appId, apiKey } = await users.createApp({ name: 'leaving' })
    const other = await users.createApp({ name: 'other' })
    await users.createUser({ appId, email: 'ada@example.com', userId: 'ada' })
    const otherAda = await users.createUser({ appId: other.appId, email: 'ada@example.com', userId: 'ada' })
    const snapshot = (await users.authenticate(apiKey, 'ada'))?.snapshot
    t.same(await users.deleteApp({ appId }), { app: { appId, name: 'leaving', createdAt: 1_000 }, users: 1, keys: 1, storedResponses: 0 })
    t.equal(await users.authenticate(apiKey), undefined, 'its key is refused')
    t.same((await users.listApps()).map((a) => a.appId), [other.appId])
    await t.rejects(users.getUser({ appId, userId: 'ada' }), { constructor: UserNotFoundError, code: 'user_not_found' })
    await t.rejects(users.updateUserProfile({ appId, userId: 'ada', changes: { name: 'late' }, snapshot }), { constructor: UserNotFoundError, code: 'user_not_found' },
      'a request that read the user before answers 404')
    await t.rejects(users.createUser({ appId, email: 'bob@example.com' }), { constructor: ValidationError, errors: [{ path: '/appId' }] }, 'one that creates a user, 400')
    t.same(await users.getUser({ appId: other.appId, userId: 'ada' }), otherAda)
    t.equal((await users.authenticate(other.apiKey))?.appId, other.appId)
    await t.rejects(users.deleteApp({ appId }), { constructor: ValidationError, errors: [{ path: '/appId' }] }, 'no app the second time')
    await t.rejects(users.deleteApp({ appId: 5 as unknown as string }), { constructor: ValidationError, errors: [{ path: '/appId' }] })
  })

  t.test('a user read with the API key: of the key\'s app only, and only for a valid user_id', async (t) => {
    const users = await freshService(t, db)
    const a = await users.createApp({ name: 'a' })
    const b = await users.createApp({ name: 'b' })
    const adaA = await users.createUser({ appId: a.appId, email: 'ada@a.example', userId: 'ada' })
    const adaB = await users.createUser({ appId: b.appId, email: 'ada@b.example', userId: 'ada' })
    const found = await users.authenticate(a.apiKey, 'ada')
    t.match(found, { appId: a.appId, snapshot: { appId: a.appId, userId: 'ada', user: { klaimId: adaA.klaimId, email: 'ada@a.example', version: 1 } } })
    t.equal((await users.authenticate(b.apiKey, 'ada'))?.snapshot?.user?.klaimId, adaB.klaimId)
    t.same((await users.authenticate(a.apiKey, 'nobody'))?.snapshot, { appId: a.appId, userId: 'nobody', user: undefined })
    const invalid = await users.authenticate(a.apiKey, ' ada')
    t.equal(invalid?.appId, a.appId, 'an invalid user_id is not read, and the key still authenticates')
    t.notOk(invalid !== undefined && 'snapshot' in invalid)
    t.equal(await users.authenticate('klaim_sk_nope', 'ada'), undefined)
    const second = await users.createApiKey({ appId: a.appId })
    await users.revokeApiKey({ keyId: second.keyId })
    t.equal(await users.authenticate(second.apiKey, 'ada'), undefined, 'a revoked key is refused')
  })

  t.test('use cases start from a snapshot of the same app and user_id; a stale one is never written over', async (t) => {
    const users = await freshService(t, db)
    const { appId, apiKey } = await users.createApp({ name: 'app' })
    const other = await users.createApp({ name: 'other' })
    const ada = await users.createUser({ appId, email: 'ada@example.com', userId: 'ada', metadata: { base: true } })
    const snapshot = (await users.authenticate(apiKey, 'ada'))?.snapshot
    const nobody = (await users.authenticate(apiKey, 'nobody'))?.snapshot
    const changed = await users.updateUserProfile({ appId, userId: 'ada', changes: { metadata: { other: 1 } } })

    t.same(await users.getUser({ appId, userId: 'ada', snapshot }), ada, 'a read takes the snapshot as it is')
    t.same(await users.getUser({ appId, userId: 'ada', snapshot: nobody }), changed, 'a snapshot of another user_id is ignored')
    await t.rejects(users.getUser({ appId: other.appId, userId: 'ada', snapshot }), { code: 'user_not_found' }, 'a snapshot of another app is ignored')
    await t.rejects(users.getUser({ appId, userId: 'nobody', snapshot: nobody }), { code: 'user_not_found' })

    const merged = await users.updateUserProfile({ appId, userId: 'ada', changes: { metadata: { mine: 2 } }, snapshot })
    t.same(merged.metadata, { base: true, other: 1, mine: 2 }, 'the write from a stale snapshot is refused and the update runs again on the stored row')
    t.equal(merged.etag, `"${ada.klaimId}.3"`)
    t.same(await users.getUser({ appId, userId: 'ada' }), merged)
    await t.rejects(users.updateUserProfile({ appId, userId: 'nobody', changes: { name: 'x' }, snapshot: nobody }), { code: 'user_not_found' })

    // Inside a transaction (an Idempotency-Key) too: the write from a stale snapshot is refused,
    // and the transaction runs again, reading the stored row under its lock.
    const stale = (await users.authenticate(apiKey, 'ada'))?.snapshot
    await users.updateUserProfile({ appId, userId: 'ada', changes: { metadata: { between: 4 } } })
    let runs = 0
    const { response } = await users.idempotent({ scope: 'test', key: 'k', fingerprint: 'f' }, async (uow) => {
      runs++
      const user = await users.updateUserProfile({ appId, userId: 'ada', changes: { metadata: { inside: 3 } }, snapshot: stale }, uow)
      return { status: 200, body: JSON.stringify(user.metadata), headers: {} }
    }, () => undefined)
    t.same(JSON.parse(response.body), { base: true, other: 1, mine: 2, between: 4, inside: 3 })
    t.equal(runs, 2, 'the transaction ran twice: from the snapshot, then from the stored row')
  })
})

t.test('exportUsers on in-memory SQLite: one snapshot too, holding the one connection, so writes wait for its end', async (t) => {
  const persistence = await openPersistence({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await persistence.close())
  const { apps, users, transactor } = persistence
  await apps.insertApp({ appId: 'app1', name: 'app1', createdAt: 1 })
  for (const [i, userId] of ['u1', 'u2', 'u3'].entries()) await users.insert(sampleUser({ appId: 'app1', klaimId: `k${i}`, userId, email: `${userId}@example.com` }))
  const exported = exportUsers({ apps, transactor }, 1)({ appId: 'app1' })
  const listed = [((await exported.next()).value as UserProfile).userId]
  let inserted = false
  const insert = users.insert(sampleUser({ appId: 'app1', klaimId: 'k4', userId: 'u0', email: 'u0@example.com' })).then(() => { inserted = true })
  for await (const user of exported) listed.push(user.userId)
  t.same(listed, ['u1', 'u2', 'u3'])
  t.notOk(inserted, 'the insert waited for the export')
  await insert
  t.ok(await users.findByUserId('app1', 'u0'), 'and was made after it')
})

t.test('a read snapshot left idle past its limit ends, and a read then fails with SnapshotEnded', async (t) => {
  const urls = [...await Promise.all(databases.map(async (db) => await db.fresh(t))), 'sqlite::memory:']
  // All at once, so their idle times run together.
  const cases = await Promise.all(urls.map(async (databaseUrl) => {
    const name = databaseUrl === 'sqlite::memory:' ? 'in-memory SQLite' : databaseUrl.startsWith('sqlite:') ? 'a SQLite file' : 'PostgreSQL'
    const persistence = await openPersistence({ databaseUrl })
    t.teardown(async () => await persistence.close())
    await persistence.apps.insertApp({ appId: 'app1', name: 'app1', createdAt: 1 })
    const snapshot = await snapshotOpener(persistence.location, persistence.db, 5000, 1000)()
    return { name, persistence, snapshot, first: await snapshot.db.selectFrom('apps').select('id').execute() }
  }))
  for (const { name, persistence, snapshot, first } of cases) {
    t.same(first, [{ id: 'app1' }], `${name}: a read within the limit`)
    // Ended by its timer: no session is left idle in a transaction (PostgreSQL), the WAL can be
    // emptied (a SQLite file), the one connection is free (in-memory, where this waits for it).
    while (await snapshotHeld(persistence)) await new Promise((resolve) => setImmediate(resolve))
    await t.rejects(snapshot.db.selectFrom('apps').select('id').execute(), { constructor: SnapshotEnded, message: 'the read snapshot has ended: no read for 1 s' }, `${name}: then none`)
    await snapshot.close()
    await persistence.apps.insertApp({ appId: 'app2', name: 'app2', createdAt: 1 })
    t.equal((await persistence.apps.listApps()).length, 2, `${name}: the service goes on`)
  }
})

t.test('each read keeps a snapshot open: it ends only once no read has begun or ended for its limit', async (t) => {
  const persistence = await openPersistence({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await persistence.close())
  // A clock of the test's own, moved by hand: no wait, and no race with the machine's speed.
  let now = 0
  const timers = new Set<{ at: number, fn: () => void }>()
  const schedule: Schedule = (fn, ms) => {
    const timer = { at: now + ms, fn }
    timers.add(timer)
    return () => { timers.delete(timer) }
  }
  const advance = (ms: number): void => {
    now += ms
    for (const timer of [...timers]) if (timer.at <= now) { timers.delete(timer); timer.fn() }
  }
  const trx = await persistence.db.startTransaction().execute()
  let closed = 0
  const snapshot = endWhenIdle({ db: trx, close: async () => { closed++; await trx.rollback().execute() } }, 1000, schedule)
  const read = async () => await snapshot.db.selectFrom('apps').select('id').execute()
  for (let i = 0; i < 3; i++) {
    advance(900)
    t.same(await read(), [], `a read after ${now} ms`)
  }
  advance(999)
  t.equal(closed, 0, 'open 2.7 s after it began, and 999 ms after the last read')
  advance(1)
  t.equal(closed, 1, 'ended 1,000 ms after it')
  await t.rejects(read(), { constructor: SnapshotEnded, message: /has ended/ }, 'then a read fails')
  await snapshot.close()
  t.equal(closed, 1, 'once')
})

/** Whether a read snapshot is still open: a transaction left idle (PostgreSQL), a reader the WAL cannot be checkpointed past (SQLite). */
async function snapshotHeld ({ db, location }: Persistence): Promise<boolean> {
  if (location.dialect === 'postgres') {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity where datname = current_database() and state = 'idle in transaction'`.execute(db)
    return rows[0]?.n !== 0
  }
  const { rows } = await sql<{ busy: number }>`pragma wal_checkpoint(truncate)`.execute(db)
  return rows[0]?.busy !== 0
}

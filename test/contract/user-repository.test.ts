import t from 'tap'
import { KlaimIdCollisionError } from '../../src/application/ports.js'
import { EmailTakenError, UserIdTakenError } from '../../src/domain/errors.js'
import type { User } from '../../src/domain/user.js'
import { sql } from '../../src/adapters/persistence/kysely.js'
import { migrateToLatest } from '../../src/adapters/persistence/migrations/index.js'
import { openPersistence } from '../../src/adapters/persistence/open-persistence.js'
import { eachDatabase } from '../helpers/databases.js'
import { freshPersistence } from '../helpers/fixtures.js'

// The repository contract, written once as a function of a fresh migrated database.
eachDatabase(t, (t, db) => {
  async function withApps (t: Parameters<typeof freshPersistence>[0]) {
    const p = await freshPersistence(t, db)
    for (const appId of ['app1', 'app2']) await p.apps.insertApp({ appId, name: appId, createdAt: 1 })
    return p
  }

  /** The first key of app `appId`, as a first start stores it. */
  const firstKey = (appId: string) => ({ key: { keyId: `key-${appId}`, appId, prefix: 'klaim_sk_abc', createdAt: 1, revokedAt: null }, keyHash: `hash-${appId}` })

  let n = 0
  function user (overrides: Partial<User> = {}): User {
    n++
    return {
      appId: 'app1',
      klaimId: `17000000000${n}_abcde`,
      userId: `user-${n}`,
      email: `u${n}@example.com`,
      name: null,
      metadata: {},
      creditBalance: 0,
      acquisitionSource: 'api',
      createdAt: 1_753_306_133_860,
      updatedAt: 1_753_306_133_860,
      version: 1,
      ...overrides
    }
  }

  t.test('a stored user reads back exactly, numbers as numbers', async (t) => {
    const { users } = await withApps(t)
    const u = user({ name: 'Ada', metadata: { plan: 'pro', list: [1, 'two', null, { deep: true }], 'ü😀': 'ü😀', n: 1.5 }, creditBalance: 12.5, acquisitionSource: 'member_manual' })
    await users.insert(u)
    t.same(await users.findByUserId('app1', u.userId), u)
    t.equal(await users.findByUserId('app1', 'nobody'), undefined)
    t.equal(await users.findByUserId('app2', u.userId), undefined, 'another app does not see it')
    t.ok(await users.userIdExists('app1', u.userId))
    t.notOk(await users.userIdExists('app2', u.userId))
  })

  t.test('metadata arrays and empty objects survive the round trip', async (t) => {
    const { users } = await withApps(t)
    const u = user({ metadata: { tags: ['a', 'b'], empty: {}, none: [] } })
    await users.insert(u)
    t.same((await users.findByUserId('app1', u.userId))?.metadata, { tags: ['a', 'b'], empty: {}, none: [] })
  })

  t.test('user_id and email are unique per app; email case-insensitively, beyond ASCII', async (t) => {
    const { users } = await withApps(t)
    const first = user({ userId: 'same', email: 'ÄDA@Example.com' })
    await users.insert(first)
    await t.rejects(users.insert(user({ userId: 'same' })), UserIdTakenError)
    await t.rejects(users.insert(user({ email: 'äda@example.COM' })), EmailTakenError)
    await users.insert(user({ appId: 'app2', userId: 'same', email: 'äda@example.com' }))
    t.pass('another app may hold both')
  })

  t.test('a klaim_id collision is told apart, and leaves the transaction usable', async (t) => {
    const { users, transactor } = await withApps(t)
    const first = user()
    await users.insert(first)
    const result = await transactor.transaction(async ({ users }) => {
      await t.rejects(users.insert(user({ klaimId: first.klaimId })), KlaimIdCollisionError)
      const other = user()
      await users.insert(other)
      return other
    })
    t.same(await users.findByUserId('app1', result.userId), result)
  })

  t.test('update writes every field and maps conflicts', async (t) => {
    const { users } = await withApps(t)
    const a = user()
    const b = user()
    await users.insert(a)
    await users.insert(b)
    const changed = { ...a, userId: 'renamed', email: 'New@Example.com', name: 'N', metadata: { x: [1] }, updatedAt: a.updatedAt + 5, version: 2 }
    await users.update(changed, a)
    t.same(await users.findByUserId('app1', 'renamed'), changed)
    t.equal(await users.findByUserId('app1', a.userId), undefined)
    await t.rejects(users.update({ ...b, userId: 'renamed', version: 2 }, b), UserIdTakenError)
    await t.rejects(users.update({ ...b, email: 'new@example.com', version: 2 }, b), EmailTakenError)
    await users.update({ ...changed, email: 'NEW@example.com', version: 3 }, changed)
    t.equal((await users.findByUserId('app1', 'renamed'))?.email, 'NEW@example.com', 'its own address in another case is no conflict')
    await t.rejects(users.update({ ...changed, name: 'late', version: 3 }, changed), { code: '40001' }, 'a write over a version that is gone is refused as retryable')
    t.equal((await users.findByUserId('app1', 'renamed'))?.name, 'N')
  })

  t.test('a write from a stale read never lands on the user who now holds that user_id', async (t) => {
    const { users } = await withApps(t)
    const stale = user({ userId: 'passed-on' })
    await users.insert(stale)
    await users.update({ ...stale, userId: 'moved', version: 2 }, stale)
    // Another user takes the freed user_id, at the version the stale read saw.
    const holder = user({ userId: 'passed-on' })
    await users.insert(holder)
    t.equal(holder.version, stale.version)
    await t.rejects(users.update({ ...stale, name: 'late', version: 2 }, stale), { code: '40001' })
    t.same(await users.findByUserId('app1', 'passed-on'), holder, 'untouched')
    t.equal((await users.findByUserId('app1', 'moved'))?.name, stale.name)
  })

  t.test('a user deleted by user_id comes back as it was; its user_id and email are free at once', async (t) => {
    const { users } = await withApps(t)
    const gone = user({ name: 'Ada', metadata: { plan: 'pro' }, creditBalance: 2.5 })
    const kept = user()
    const twin = user({ appId: 'app2', userId: gone.userId, email: gone.email })
    for (const u of [gone, kept, twin]) await users.insert(u)
    t.same(await users.deleteByUserId('app1', gone.userId), gone)
    t.equal(await users.findByUserId('app1', gone.userId), undefined)
    t.equal(await users.deleteByUserId('app1', gone.userId), undefined, 'none the second time')
    t.equal(await users.deleteByUserId('app1', 'nobody'), undefined)
    t.same(await users.findByUserId('app1', kept.userId), kept, 'another user of the app stays')
    t.same(await users.findByUserId('app2', twin.userId), twin, 'the same user_id in another app stays')
    await users.insert(user({ userId: gone.userId, email: gone.email.toUpperCase() }))
    t.pass('a new user may take the user_id and the email')
    await t.rejects(users.update({ ...gone, name: 'late', version: 2 }, gone), { code: '40001' }, 'a write from a read before the delete is refused')
  })

  t.test('users listed a page at a time, in user_id order, of their app only', async (t) => {
    const { users } = await withApps(t)
    const listed = ['b', 'a', 'c', 'e', 'd'].map((userId) => user({ userId, name: userId }))
    for (const u of [...listed, user({ appId: 'app2', userId: 'a0' })]) await users.insert(u)
    const byUserId = (a: User, b: User) => a.userId < b.userId ? -1 : 1
    t.same(await users.listPage('app1', undefined, 2), listed.slice().sort(byUserId).slice(0, 2), 'the users read back exactly, as findByUserId has them')
    t.same((await users.listPage('app1', 'b', 2)).map((u) => u.userId), ['c', 'd'])
    t.same((await users.listPage('app1', 'd', 2)).map((u) => u.userId), ['e'])
    t.same(await users.listPage('app1', 'e', 2), [])
    t.same((await users.listPage('app1', 'a', 100)).map((u) => u.userId), ['b', 'c', 'd', 'e'])
    t.same((await users.listPage('app2', undefined, 100)).map((u) => u.userId), ['a0'])
    t.same(await users.listPage('nope', undefined, 100), [])
  })

  t.test('a failed transaction leaves nothing behind', async (t) => {
    const { users, transactor } = await withApps(t)
    const kept = user()
    await users.insert(kept)
    await t.rejects(transactor.transaction(async ({ users }) => {
      await users.update({ ...kept, name: 'changed', version: 2 }, kept)
      await users.insert(user())
      throw new Error('boom')
    }), /boom/)
    t.same(await users.findByUserId('app1', kept.userId), kept)
  })

  t.test('concurrent read-merge-write transactions never lose an update', async (t) => {
    const { users, transactor } = await withApps(t)
    const u = user()
    await users.insert(u)
    await Promise.all(Array.from({ length: 20 }, async (_, i) => await transactor.transaction(async ({ users }) => {
      const current = await users.findByUserId('app1', u.userId)
      if (current === undefined) throw new Error('missing')
      await users.update({ ...current, metadata: { ...current.metadata, [`k${i}`]: i }, version: current.version + 1 }, current)
    })))
    const final = await users.findByUserId('app1', u.userId)
    t.equal(Object.keys(final?.metadata ?? {}).length, 20)
    t.equal(final?.version, 21)
  })

  t.test('a transaction aborted for a deadlock or serialisation failure is run again', async (t) => {
    const { transactor } = await withApps(t)
    let attempts = 0
    const code = db.dialect === 'postgres' ? '40001' : 'SQLITE_BUSY'
    const result = await transactor.transaction(async () => {
      if (++attempts < 3) throw Object.assign(new Error('aborted'), { code })
      return 'done'
    })
    t.equal(result, 'done')
    t.equal(attempts, 3)
    await t.rejects(transactor.transaction(async () => { throw Object.assign(new Error('other'), { code: '23514' }) }), /other/, 'other errors are not retried')
  })

  if (db.dialect === 'postgres') {
    t.test('a real deadlock between two transactions is retried: both succeed', async (t) => {
      const { users, transactor } = await withApps(t)
      const [a, b] = [user(), user()]
      await users.insert(a)
      await users.insert(b)
      // Each transaction locks one row, waits until the other holds its row, then wants it too.
      let release = (): void => {}
      const bothLocked = new Promise<void>((resolve) => { let n = 0; release = () => { if (++n === 2) resolve() } })
      const lockBoth = (first: User, second: User) => transactor.transaction(async ({ users }) => {
        const one = await users.findByUserId('app1', first.userId)
        release()
        await bothLocked
        const two = await users.findByUserId('app1', second.userId)
        if (one === undefined || two === undefined) throw new Error('missing')
        await users.update({ ...one, name: `${one.name ?? ''}+`, version: one.version + 1 }, one)
      })
      await Promise.all([lockBoth(a, b), lockBoth(b, a)])
      t.equal((await users.findByUserId('app1', a.userId))?.name, '+')
      t.equal((await users.findByUserId('app1', b.userId))?.name, '+')
    })
  }

  t.test('apps and keys: stored, listed, revoked, found by hash', async (t) => {
    const { apps } = await withApps(t)
    t.ok(await apps.appExists('app1'))
    t.notOk(await apps.appExists('nope'))
    t.same((await apps.listApps()).map((a) => a.appId), ['app1', 'app2'])
    await apps.insertKey({ key: { keyId: 'k1', appId: 'app1', prefix: 'klaim_sk_abc', createdAt: 5, revokedAt: null }, keyHash: 'hash1' })
    t.same(await apps.findKeyByHash('hash1'), { keyId: 'k1', appId: 'app1', keyHash: 'hash1', revokedAt: null })
    t.equal(await apps.findKeyByHash('nope'), undefined)
    t.ok(await apps.revokeKey('k1', 9))
    t.ok(await apps.revokeKey('k1', 10), 'revoking twice is fine')
    t.notOk(await apps.revokeKey('nope', 9))
    t.same(await apps.findKeyByHash('hash1'), { keyId: 'k1', appId: 'app1', keyHash: 'hash1', revokedAt: 9 })
    t.same(await apps.listKeys('app1'), [{ keyId: 'k1', appId: 'app1', prefix: 'klaim_sk_abc', createdAt: 5, revokedAt: 9 }])
  })

  t.test('an app deleted goes with its users, keys and stored answers, in batches; another app keeps its own', async (t) => {
    const { apps, users, idempotency } = await withApps(t)
    const key = (keyId: string, appId: string, revokedAt: number | null = null) =>
      ({ key: { keyId, appId, prefix: 'klaim_sk_abc', createdAt: 5, revokedAt }, keyHash: `hash-${keyId}` })
    for (const k of [key('k1', 'app1'), key('k1b', 'app1', 7), key('k2', 'app2')]) await apps.insertKey(k)
    // More than a batch of users in the app deleted; the other app's user has the same user_id as one.
    const many = Array.from({ length: 1001 }, (_, i) => user({ userId: `many-${i}` }))
    for (let i = 0; i < many.length; i += 100) await Promise.all(many.slice(i, i + 100).map(async (u) => await users.insert(u)))
    const kept = user({ appId: 'app2', userId: 'many-0', email: many[0]?.email })
    await users.insert(kept)
    const record = { fingerprint: 'f', response: undefined, lockedUntil: 5, expiresAt: 9e12 }
    for (const [scope, k] of [['k1', 'a'], ['k1', 'b'], ['k1b', 'a'], ['k2', 'a']] as const) {
      await idempotency.claim(scope, k, record)
      await idempotency.complete(scope, k, 5, { status: 200, body: '{}', headers: {} })
    }

    let letIn = false
    setImmediate(() => { letIn = true })
    t.same(await apps.deleteApp('app1', 50), { app: { appId: 'app1', name: 'app1', createdAt: 1 }, users: 1001, keys: 2, storedResponses: 3 })
    t.ok(letIn, 'the event loop ran between batches')
    t.same((await apps.listApps()).map((a) => a.appId), ['app2'])
    t.equal(await apps.findKeyByHash('hash-k1'), undefined)
    t.same(await apps.listKeys('app1'), [])
    t.equal(await users.findByUserId('app1', 'many-1000'), undefined)
    t.equal(await idempotency.find('k1', 'a'), undefined)
    t.equal(await idempotency.find('k1b', 'a'), undefined, 'under a key revoked before too')
    t.same(await users.findByUserId('app2', 'many-0'), kept, 'the other app\'s user stays')
    t.match(await apps.findKeyByHash('hash-k2'), { appId: 'app2', revokedAt: null }, 'and its key')
    t.match(await idempotency.find('k2', 'a'), { response: { status: 200 } }, 'and its stored answer')
    t.equal(await apps.deleteApp('app1', 60), undefined, 'none the second time')
    t.equal(await apps.deleteApp('nope', 60), undefined)
  })

  t.test('an app\'s deletion revokes its keys before anything else, and run again finishes it', async (t) => {
    const { apps, users, db: kysely } = await withApps(t)
    await apps.insertKey({ key: { keyId: 'k1', appId: 'app1', prefix: 'klaim_sk_abc', createdAt: 5, revokedAt: null }, keyHash: 'hash1' })
    await users.insert(user())
    // The users' deletion fails (a trigger stands in for a crash): the keys are revoked already.
    if (db.dialect === 'sqlite') {
      await sql`create trigger refuse before delete on users begin select raise(abort, 'interrupted'); end`.execute(kysely)
    } else {
      await sql`create function refuse() returns trigger language plpgsql as $$ begin raise exception 'interrupted'; end $$`.execute(kysely)
      await sql`create trigger refuse before delete on users for each row execute function refuse()`.execute(kysely)
    }
    await t.rejects(apps.deleteApp('app1', 50), /interrupted/)
    t.match(await apps.findKeyByHash('hash1'), { revokedAt: 50 }, 'no request of the app gets in any more')
    t.ok(await apps.appExists('app1'))
    await sql`drop trigger refuse${db.dialect === 'sqlite' ? sql`` : sql` on users`}`.execute(kysely)
    t.match(await apps.deleteApp('app1', 60), { users: 1, keys: 1 })
    t.notOk(await apps.appExists('app1'))
    const both = await Promise.all([apps.deleteApp('app2', 70), apps.deleteApp('app2', 70)])
    t.equal(both.filter((deleted) => deleted !== undefined).length, 1, 'of two deletions at once, one reports the app deleted')
  })

  if (db.dialect === 'postgres') {
    t.test('an app\'s deletion waits for a user being created in it, and deletes that one too', async (t) => {
      const { apps, db: kysely } = await withApps(t)
      // A row as a request's INSERT writes it, sent here on a transaction of the test's own.
      const row = (userId: string) => ({ klaim_id: `k-${userId}`, app_id: 'app1', user_id: userId, email: `${userId}@example.com`, email_key: `${userId}@example.com`, metadata: '{}', credit_balance: 0, acquisition_source: 'api', created_at: 1, updated_at: 1 })
      let deletion: Promise<unknown> | undefined
      // A request past its key check, inserting a user of the app while the deletion runs: it
      // commits once the deletion waits for it (on the app's row, which its foreign key locks).
      await kysely.transaction().execute(async (trx) => {
        await trx.insertInto('users').values(row('late')).execute()
        deletion = apps.deleteApp('app1', 50)
        for (;;) {
          const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`.execute(kysely)
          if (rows[0]?.n === 1) break
        }
      })
      t.match(await deletion, { users: 1 }, 'the late user is deleted with the app, no foreign key error')
      t.notOk(await apps.appExists('app1'))
      await t.rejects(kysely.insertInto('users').values(row('later')).execute(), { code: '23503' }, 'a later one finds no app')
    })
  }

  t.test('a first app only in a database that never held one: not after its apps were deleted', async (t) => {
    const { apps } = await freshPersistence(t, db)
    t.ok(await apps.insertFirstApp({ appId: 'first', name: 'default', createdAt: 1 }, firstKey('first')))
    t.notOk(await apps.insertFirstApp({ appId: 'second', name: 'default', createdAt: 2 }, firstKey('second')))
    t.ok(await apps.deleteApp('first', 3))
    t.same(await apps.listApps(), [])
    t.notOk(await apps.insertFirstApp({ appId: 'third', name: 'default', createdAt: 4 }, firstKey('third')), 'its last app deleted')
    t.same(await apps.listApps(), [])
    // An app made some other way (the CLI's `apps create`) counts as well.
    const other = await freshPersistence(t, db)
    await other.apps.insertApp({ appId: 'made', name: 'made', createdAt: 1 })
    t.ok(await other.apps.deleteApp('made', 2))
    t.notOk(await other.apps.insertFirstApp({ appId: 'first', name: 'default', createdAt: 3 }, firstKey('first')))
    t.same(await other.apps.listApps(), [])
  })

  t.test('a first app\'s beforeCommit runs in its transaction, only when it is stored: if it throws, nothing is', async (t) => {
    const { apps } = await freshPersistence(t, db)
    await t.rejects(apps.insertFirstApp({ appId: 'first', name: 'default', createdAt: 1 }, firstKey('first'), async () => { throw new Error('cannot keep its key') }), { message: 'cannot keep its key' })
    t.same(await apps.listApps(), [], 'no app')
    t.notOk(await apps.findKeyByHash(firstKey('first').keyHash), 'no key')
    const calls: string[] = []
    t.ok(await apps.insertFirstApp({ appId: 'first', name: 'default', createdAt: 2 }, firstKey('first'), async () => { calls.push('first') }), 'the one that failed left no record that an app was held')
    t.notOk(await apps.insertFirstApp({ appId: 'second', name: 'default', createdAt: 3 }, firstKey('second'), async () => { calls.push('second') }))
    t.same(calls, ['first'])
  })

  t.test('migrating a database that holds apps records that it has held one; an empty one gets its first app', async (t) => {
    const open = async (databaseUrl: string) => {
      const p = await openPersistence({ databaseUrl, migrate: false })
      t.teardown(async () => await p.close())
      t.same(await migrateToLatest(p.db, db.dialect, '0004-servers'), ['0001-initial', '0002-idempotency-keys', '0003-rate-limits', '0004-servers'])
      return p
    }
    const withApps = await open(await db.fresh(t))
    await withApps.db.insertInto('apps').values([{ id: 'older', name: 'older', created_at: 5 }, { id: 'newer', name: 'newer', created_at: 7 }]).execute()
    t.same(await withApps.migrate(), ['0005-milestones'])
    t.same((await withApps.db.selectFrom('milestones').selectAll().execute()).map((m) => ({ ...m, reached_at: Number(m.reached_at) })),
      [{ name: 'first-app', reached_at: 5 }], 'since its oldest app')
    for (const appId of ['older', 'newer']) t.ok(await withApps.apps.deleteApp(appId, 8))
    t.notOk(await withApps.apps.insertFirstApp({ appId: 'first', name: 'default', createdAt: 9 }, firstKey('first')))
    const empty = await open(await db.fresh(t))
    t.same(await empty.migrate(), ['0005-milestones'])
    t.ok(await empty.apps.insertFirstApp({ appId: 'first', name: 'default', createdAt: 9 }, firstKey('first')))
  })

  t.test('a key and a user in one read: only a user of the key\'s app, none for a revoked key', async (t) => {
    const { apps, users } = await withApps(t)
    await apps.insertKey({ key: { keyId: 'k1', appId: 'app1', prefix: 'klaim_sk_abc', createdAt: 5, revokedAt: null }, keyHash: 'hash1' })
    await apps.insertKey({ key: { keyId: 'k2', appId: 'app2', prefix: 'klaim_sk_def', createdAt: 5, revokedAt: null }, keyHash: 'hash2' })
    const ada1 = user({ userId: 'ada', metadata: { app: 1 } })
    const ada2 = user({ appId: 'app2', userId: 'ada', metadata: { app: 2 } })
    const bob2 = user({ appId: 'app2', userId: 'bob' })
    for (const u of [ada1, ada2, bob2]) await users.insert(u)
    const key1 = { keyId: 'k1', appId: 'app1', keyHash: 'hash1', revokedAt: null }
    t.same(await apps.findKeyAndUser('hash1', 'ada'), { key: key1, user: ada1 }, 'the user reads back exactly, as findByUserId has it')
    t.same(await apps.findKeyAndUser('hash2', 'ada'), { key: { ...key1, keyId: 'k2', appId: 'app2', keyHash: 'hash2' }, user: ada2 })
    t.same(await apps.findKeyAndUser('hash1', 'bob'), { key: key1, user: undefined }, 'another app\'s user is not found')
    t.same(await apps.findKeyAndUser('hash1', 'nobody'), { key: key1, user: undefined })
    t.equal(await apps.findKeyAndUser('nope', 'ada'), undefined)
    await apps.revokeKey('k1', 9)
    t.same(await apps.findKeyAndUser('hash1', 'ada'), { key: { ...key1, revokedAt: 9 }, user: undefined }, 'a revoked key reads no user')
  })

  t.test('rate counter: counts per bucket and window, starts again in a later window, never goes back', async (t) => {
    const { rateCounter } = await freshPersistence(t, db)
    t.same(await rateCounter.hit('key:a', 60_000), { windowStart: 60_000, hits: 1 })
    t.same(await rateCounter.hit('key:a', 60_000), { windowStart: 60_000, hits: 2 })
    t.same(await rateCounter.hit('ip:::1', 60_000), { windowStart: 60_000, hits: 1 }, 'buckets count apart')
    t.same(await rateCounter.hit('key:a', 120_000), { windowStart: 120_000, hits: 1 }, 'a later window starts again')
    t.same(await rateCounter.hit('key:a', 60_000), { windowStart: 120_000, hits: 1 }, 'an earlier one counts nothing')
    // 40 requests at once, as from many processes: each counted once.
    const counts = await Promise.all(Array.from({ length: 40 }, async () => (await rateCounter.hit('key:b', 60_000)).hits))
    t.same(counts.sort((a, b) => a - b), Array.from({ length: 40 }, (_, i) => i + 1))
    t.equal(await rateCounter.purge(120_000), 2, 'the buckets last counted before 120000')
    t.same(await rateCounter.hit('key:b', 60_000), { windowStart: 60_000, hits: 1 }, 'a purged bucket starts again')
    t.same(await rateCounter.hit('key:a', 120_000), { windowStart: 120_000, hits: 2 }, 'a bucket of the window is kept')
    await Promise.all(Array.from({ length: 1001 }, async (_, i) => await rateCounter.hit(`ip:10.0.${i >> 8}.${i & 255}`, 0)))
    t.equal(await rateCounter.purge(60_000), 1001, 'more than a batch of 1,000')
  })

  t.test('migrating again is a no-op', async (t) => {
    const p = await freshPersistence(t, db)
    t.same(await p.migrate(), [])
    await p.ping()
  })
})

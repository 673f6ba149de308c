import t from 'tap'
import { eachDatabase } from '../helpers/databases.js'
import { tally } from '../helpers/users.js'
import { buildHttpApp } from '../../src/adapters/http/app.js'
import { clientFor, freshClient, freshService } from '../helpers/fixtures.js'

// Requests are started together and race inside the service; the database alone decides.
eachDatabase(t, (t, db) => {
  t.test('20 users renamed at once to one user_id: exactly one wins', async (t) => {
    const client = await freshClient(t, db)
    for (let i = 0; i < 20; i++) await client.createUser({ email: `u${i}@example.com`, user_id: `u${i}` })
    const responses = await Promise.all(Array.from({ length: 20 }, async (_, i) => await client.put(`u${i}`, { user_id: 'winner' })))
    t.same(tally(responses.map((r) => r.statusCode)), { 200: 1, 409: 19 })
    for (const r of responses.filter((r) => r.statusCode === 409)) t.equal(r.json().code, 'user_id_taken')
    const winner = responses.find((r) => r.statusCode === 200)?.json()
    t.same((await client.request({ method: 'GET', url: '/users/winner' })).json(), winner)
  })

  t.test('20 users changing to one email at once: exactly one wins', async (t) => {
    const client = await freshClient(t, db)
    for (let i = 0; i < 20; i++) await client.createUser({ email: `u${i}@example.com`, user_id: `u${i}` })
    const responses = await Promise.all(Array.from({ length: 20 }, async (_, i) => await client.put(`u${i}`, { email: i % 2 === 0 ? 'Same@Example.com' : 'same@example.com' })))
    t.same(tally(responses.map((r) => r.statusCode)), { 200: 1, 409: 19 })
    for (const r of responses.filter((r) => r.statusCode === 409)) t.equal(r.json().code, 'email_taken')
  })

  t.test('20 users created at once with one email or one user_id: exactly one wins', async (t) => {
    const client = await freshClient(t, db)
    const byEmail = await Promise.all(Array.from({ length: 20 }, async (_, i) => await client.createUser({ email: 'one@example.com', user_id: `e${i}` })))
    t.same(tally(byEmail.map((r) => r.statusCode)), { 201: 1, 409: 19 })
    const byId = await Promise.all(Array.from({ length: 20 }, async (_, i) => await client.createUser({ email: `i${i}@example.com`, user_id: 'one' })))
    t.same(tally(byId.map((r) => r.statusCode)), { 201: 1, 409: 19 })
  })

  t.test('25 parallel merges of distinct metadata keys on one user: all 200, no key lost', async (t) => {
    const client = await freshClient(t, db)
    await client.createUser({ email: 'ada@example.com', user_id: 'ada', metadata: { base: true } })
    const responses = await Promise.all(Array.from({ length: 25 }, async (_, i) => await client.put('ada', { metadata: { [`k${i}`]: i } })))
    t.same(tally(responses.map((r) => r.statusCode)), { 200: 25 })
    const final = (await client.request({ method: 'GET', url: '/users/ada' }))
    t.same(final.json().metadata, { base: true, ...Object.fromEntries(Array.from({ length: 25 }, (_, i) => [`k${i}`, i])) })
    t.match(final.headers.etag, /\.26"$/, 'each merge was one version')
  })

  t.test('two writers holding the same ETag: exactly one wins', async (t) => {
    const client = await freshClient(t, db)
    const etag = (await client.createUser({ email: 'ada@example.com', user_id: 'ada' })).headers.etag as string
    const responses = await Promise.all(Array.from({ length: 10 }, async (_, i) => await client.put('ada', { name: `writer ${i}` }, { 'if-match': etag })))
    t.same(tally(responses.map((r) => r.statusCode)), { 200: 1, 412: 9 })
  })

  t.test('a write landing between the read with the API key and the PUT is merged, never overwritten', async (t) => {
    const service = await freshService(t, db)
    const { appId, apiKey } = await service.createApp({ name: 'test' })
    await service.createUser({ appId, email: 'ada@example.com', userId: 'ada', metadata: { base: true } })
    let snapshots = 0
    let readsInTransactions = 0
    const writeBetween = (metadata: Record<string, number>) => async () => await service.updateUserProfile({ appId, userId: 'ada', changes: { metadata } })
    let between: (() => Promise<unknown>) | undefined = writeBetween({ other: 1 })
    const app = await buildHttpApp({
      service: {
        ...service,
        async authenticate (key, readUser) {
          const found = await service.authenticate(key, readUser)
          if (found?.snapshot?.user !== undefined) snapshots++
          const write = between
          between = undefined
          await write?.()
          return found
        },
        // Counts the reads of users inside the request's transaction.
        async idempotent (request, work, storedFailure) {
          return await service.idempotent(request, async (uow) => await work({
            ...uow,
            users: { ...uow.users, findByUserId: async (...args) => { readsInTransactions++; return await uow.users.findByUserId(...args) } }
          }), storedFailure)
        }
      }
    })
    t.teardown(async () => await app.close())
    const client = clientFor(app, service, appId, apiKey)
    const res = await client.put('ada', { metadata: { mine: 2 } })
    t.equal(res.statusCode, 200)
    t.same(res.json().metadata, { base: true, other: 1, mine: 2 })
    t.match(res.headers.etag, /\.3"$/)
    t.equal(snapshots, 1, 'the PUT read the user with its key')
    const read = await client.request({ method: 'GET', url: '/users/ada' })
    t.same(read.json(), res.json())
    t.equal(snapshots, 2, 'so did the GET')

    // Under an Idempotency-Key the transaction starts from that read too, and needs no read of
    // its own; one landing after a write is refused by the guarded UPDATE, and the transaction
    // runs again, reading under its lock.
    const keyed = await client.put('ada', { name: 'Ada' }, { 'idempotency-key': 'k1' })
    t.equal(keyed.statusCode, 200)
    t.match(keyed.headers.etag, /\.4"$/)
    t.equal(snapshots, 3)
    t.equal(readsInTransactions, 0, 'the transaction started from the read with the API key')
    between = writeBetween({ third: 3 })
    const merged = await client.put('ada', { metadata: { keyed: 4 } }, { 'idempotency-key': 'k2' })
    t.equal(merged.statusCode, 200)
    t.same(merged.json().metadata, { base: true, other: 1, mine: 2, third: 3, keyed: 4 })
    t.match(merged.headers.etag, /\.6"$/)
    t.equal(readsInTransactions, 1, 'the stale start was refused, and the transaction ran again with a read')
    const replayed = await client.put('ada', { metadata: { keyed: 4 } }, { 'idempotency-key': 'k2' })
    t.equal(replayed.headers['idempotent-replayed'], 'true')
    t.same(replayed.json(), merged.json())
  })

  t.test('25 parallel merges under Idempotency-Keys on one user: all 200, no key lost', async (t) => {
    const client = await freshClient(t, db)
    await client.createUser({ email: 'ada@example.com', user_id: 'ada', metadata: { base: true } })
    const responses = await Promise.all(Array.from({ length: 25 }, async (_, i) => await client.put('ada', { metadata: { [`k${i}`]: i } }, { 'idempotency-key': `key-${i}` })))
    t.same(tally(responses.map((r) => r.statusCode)), { 200: 25 })
    const final = (await client.request({ method: 'GET', url: '/users/ada' }))
    t.same(final.json().metadata, { base: true, ...Object.fromEntries(Array.from({ length: 25 }, (_, i) => [`k${i}`, i])) })
    t.match(final.headers.etag, /\.26"$/, 'each merge was one version')
  })
})

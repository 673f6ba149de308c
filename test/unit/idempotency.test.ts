import t, { type Test } from 'tap'
import { idempotent, IDEMPOTENCY_LOCK_MS } from '../../src/application/idempotency.js'
import type { IdempotencyRecord, IdempotencyStore, StoredResponse, Transactor, UnitOfWork } from '../../src/application/ports.js'
import { IdempotencyInProgressError, UserNotFoundError } from '../../src/domain/errors.js'
import { eachDatabase } from '../helpers/databases.js'
import { freshPersistence } from '../helpers/fixtures.js'

const request = { scope: 'api-key', key: 'retry-1', fingerprint: 'PUT /users/ada {}' }
const answer = (body: string): StoredResponse => ({ status: 200, body, headers: {} })
const record = (now: number): IdempotencyRecord => ({ fingerprint: 'f', response: undefined, lockedUntil: now + IDEMPOTENCY_LOCK_MS, expiresAt: now + 86_400_000 })
const notStored = (): undefined => undefined

/** A retry that takes the abandoned key over and is still running. */
async function takeOverUnanswered (store: IdempotencyStore, now: number): Promise<IdempotencyRecord> {
  const stored = await store.find(request.scope, request.key)
  const claim = { ...record(now), fingerprint: request.fingerprint }
  if (stored === undefined || !await store.takeOver(request.scope, request.key, stored, claim)) throw new Error('the retry could not take the key over')
  return claim
}

// A request that runs past its 60 s lock, whose key a retry takes over: the transactor below runs
// `meanwhile` (the retry) after the slow request's claim and before its transaction, as a long
// stall between the two would. Each run leaves a mark through its unit of work, so a change that
// landed shows.
eachDatabase(t, (t, db) => {
  type Meanwhile = (retry: ReturnType<typeof idempotent>, store: IdempotencyStore, now: number) => Promise<unknown>
  async function setup (t: Test, meanwhile: Meanwhile) {
    const { transactor, idempotency: store } = await freshPersistence(t, db)
    let now = 1_800_000_000_000
    const clock = { now: () => now }
    const plain = idempotent({ transactor, store, clock })
    let stalled = false
    const stall = async (): Promise<void> => {
      if (!stalled) {
        stalled = true
        now += IDEMPOTENCY_LOCK_MS + 1
        await meanwhile(plain, store, now)
      }
    }
    // Both ways into a transaction stall, whichever the runner takes.
    const slow: Transactor = {
      ...transactor,
      transaction: async (work) => {
        await stall()
        return await transactor.transaction(work)
      },
      guardedTransaction: async (work) => {
        await stall()
        return transactor.guardedTransaction === undefined ? await transactor.transaction(work) : await transactor.guardedTransaction(work)
      }
    }
    const mark = async (uow: UnitOfWork, who: string): Promise<void> => { await uow.idempotency.claim('marks', who, record(now)) }
    const marked = async (who: string): Promise<boolean> => await store.find('marks', who) !== undefined
    return { run: idempotent({ transactor: slow, store, clock }), store, mark, marked }
  }

  t.test('a request taken over past its lock: its change is rolled back and it answers with the retry\'s response', async (t) => {
    const { run, store, mark, marked } = await setup(t, async (retryRun) => {
      const retry = await retryRun(request, async (uow) => { await mark(uow, 'retry'); return answer('"retry"') }, notStored)
      t.same(retry, { response: answer('"retry"'), replayed: false }, 'the retry takes the abandoned key and runs')
    })
    const slow = await run(request, async (uow) => { await mark(uow, 'slow'); return answer('"slow"') }, notStored)
    t.same(slow, { response: answer('"retry"'), replayed: true })
    t.notOk(await marked('slow'), 'the slow request\'s change did not land')
    t.ok(await marked('retry'))
    t.same((await store.find(request.scope, request.key))?.response, answer('"retry"'), 'the retry\'s response is kept, not overwritten')
  })

  t.test('a request taken over while the retry still runs: 409 in progress, its change rolled back, the retry\'s claim kept', async (t) => {
    let retryClaim: IdempotencyRecord | undefined
    const { run, store, mark, marked } = await setup(t, async (_retry, store, now) => {
      retryClaim = await takeOverUnanswered(store, now)
    })
    await t.rejects(run(request, async (uow) => { await mark(uow, 'slow'); return answer('"slow"') }, notStored), IdempotencyInProgressError)
    t.notOk(await marked('slow'))
    t.same(await store.find(request.scope, request.key), retryClaim, 'the retry still holds the key')
  })

  t.test('a taken-over request neither stores its failure nor releases the key it lost', async (t) => {
    const stillRunning: Meanwhile = async (_retry, store, now) => await takeOverUnanswered(store, now)
    const failing = await setup(t, stillRunning)
    await t.rejects(failing.run(request, async () => { throw new UserNotFoundError() }, () => answer('"404"')), IdempotencyInProgressError, 'a failure worth storing')
    t.equal((await failing.store.find(request.scope, request.key))?.response, undefined, 'is not stored over the retry\'s claim')
    const crashing = await setup(t, stillRunning)
    await t.rejects(crashing.run(request, async () => { throw new Error('connection lost') }, notStored), { message: 'connection lost' }, 'a failure not worth storing')
    t.not(await crashing.store.find(request.scope, request.key), undefined, 'does not release the retry\'s claim')
  })

  t.test('expired keys are purged in batches, with other work let in between', async (t) => {
    const { db: kysely, idempotency: store } = await freshPersistence(t, db)
    const now = 1_800_000_000_000
    const row = (i: number, expiresAt: number) => ({ scope: 's', key: `k${i}`, fingerprint: 'f', status: null, body: null, headers: null, locked_until: expiresAt, expires_at: expiresAt })
    // More than two batches of expired keys, and some that live on.
    const rows = [...Array.from({ length: 2500 }, (_, i) => row(i, now - i)), ...Array.from({ length: 3 }, (_, i) => row(-1 - i, now + 1))]
    for (let i = 0; i < rows.length; i += 500) await kysely.insertInto('idempotency_keys').values(rows.slice(i, i + 500)).execute()

    let letIn = false
    setImmediate(() => { letIn = true })
    t.equal(await store.purgeExpired(now), 2500)
    t.ok(letIn, 'the event loop ran between batches (on SQLite a single DELETE would hold it throughout)')
    t.same((await kysely.selectFrom('idempotency_keys').select('key').orderBy('key').execute()).map((r) => r.key), ['k-1', 'k-2', 'k-3'], 'the live keys stay')
    t.equal(await store.purgeExpired(now), 0)
  })

  t.test('the answers holding a text are deleted under the given scopes only, case and all, batch by batch', async (t) => {
    const { db: kysely, idempotency: store } = await freshPersistence(t, db)
    const klaimId = '1700000000000_aB_c%'
    const row = (scope: string, key: string, body: string | null) => ({ scope, key, fingerprint: 'f', status: body === null ? null : 200, body, headers: body === null ? null : '{}', locked_until: 0, expires_at: 9e12 })
    const holding = `{"klaim_id":"${klaimId}","name":"Ada"}`
    // More than two batches of keys in one scope, a few of them holding the text.
    const many = Array.from({ length: 2500 }, (_, i) => row('k1', `key-${String(i).padStart(4, '0')}`, i % 1000 === 7 ? holding : '{"klaim_id":"other"}'))
    const rows = [...many,
      row('k2', 'a', holding), row('k2', 'b', holding.toUpperCase()), row('k2', 'c', holding.replace('aB', 'ab')), row('k2', 'd', null),
      row('other-app', 'a', holding)]
    for (let i = 0; i < rows.length; i += 500) await kysely.insertInto('idempotency_keys').values(rows.slice(i, i + 500)).execute()

    t.equal(await store.deleteAnswersHolding(['k1', 'k2', 'no-answers'], klaimId), 4)
    const left = await kysely.selectFrom('idempotency_keys').select(['scope', 'key']).where('scope', '!=', 'k1').where('status', 'is not', null).orderBy('scope').orderBy('key').execute()
    t.same(left, [{ scope: 'k2', key: 'b' }, { scope: 'k2', key: 'c' }, { scope: 'other-app', key: 'a' }], 'another case, another text and another scope stay')
    t.equal((await kysely.selectFrom('idempotency_keys').select('key').where('scope', '=', 'k1').execute()).length, 2497, 'the rest of the scope stays')
    t.match(await store.find('k2', 'd'), { response: undefined }, 'a claim not answered yet stays')
    t.equal(await store.deleteAnswersHolding(['k1', 'k2'], klaimId), 0)
    t.equal(await store.deleteAnswersHolding([], klaimId), 0)
  })
})

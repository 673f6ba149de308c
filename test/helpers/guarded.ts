import type { Persistence } from '../../src/adapters/persistence/open-persistence.js'
import type { UnitOfWork } from '../../src/application/ports.js'
import type { Test } from 'tap'
import { UserIdTakenError, UserNotFoundError } from '../../src/domain/errors.js'
import type { User } from '../../src/domain/user.js'
import { sampleUser } from './users.js'

/**
 * The work every guarded transaction must get right (see `Transactor.guardedTransaction`), on
 * `persistence` with the user `ada` of `appId` stored (version 1). Each case says how many times
 * its work ran; the caller checks where its statements went.
 */
export function guardedCases (persistence: Persistence, appId: string) {
  const { users } = persistence
  const guarded = persistence.transactor.guardedTransaction
  if (guarded === undefined) throw new Error('this database has guarded transactions')
  let n = 0
  const another = (): User => sampleUser({ appId, userId: `u${++n}`, klaimId: `k${n}_guarded`, email: `u${n}@example.com` })
  const exists = async (user: User): Promise<boolean> => await users.findByUserId(appId, user.userId) !== undefined
  const ada = async (): Promise<User | undefined> => await users.findByUserId(appId, 'ada')
  /** Inserts `inserted`, then does `then`, in a guarded transaction: its runs, and what it threw. */
  const insertThen = async (then: (uow: UnitOfWork) => Promise<void>): Promise<{ runs: number, inserted: User, error: unknown }> => {
    let runs = 0
    const inserted = another()
    const error = await guarded(async (uow) => {
      runs++
      await uow.users.insert(inserted)
      await then(uow)
    }).then(() => undefined, (error: unknown) => error)
    return { runs, inserted, error }
  }
  return {
    guarded,
    another,
    exists,
    ada,
    /** Reads ada, renames her `Ada` and inserts `inserted`: two writes, held back, made together. */
    async renameAndInsert (): Promise<{ runs: number, inserted: User }> {
      let runs = 0
      const inserted = another()
      await guarded(async (uow) => {
        runs++
        const current = await uow.users.findByUserId(appId, 'ada') as User
        await uow.users.update({ ...current, name: 'Ada', version: current.version + 1 }, current)
        await uow.users.insert(inserted)
      })
      return { runs, inserted }
    },
    /**
     * The same, but ada changes (metadata `{ by: 'another' }`) between the first run's read and
     * its writes: they are all refused, and the work runs again. `lost` is the first run's insert,
     * `kept` the second's; ada is then `Ada 2`.
     */
    async staleRead (): Promise<{ runs: number, lost: User, kept: User }> {
      let runs = 0
      const lost = another()
      const kept = another()
      await guarded(async (uow) => {
        runs++
        const current = await uow.users.findByUserId(appId, 'ada') as User
        if (runs === 1) await users.update({ ...current, metadata: { by: 'another' }, version: current.version + 1 }, current)
        await uow.users.insert(runs === 1 ? lost : kept)
        await uow.users.update({ ...current, name: `Ada ${runs}`, version: current.version + 1 }, current)
      })
      return { runs, lost, kept }
    },
    /**
     * Inserts `inserted`, then looks up a user who does not exist and answers 404, as the use
     * cases do: the answer, from what it read, with nothing made; `error` is the answer.
     */
    answering: async () => await insertThen(async (uow) => {
      if (await uow.users.findByUserId(appId, 'nobody') === undefined) throw new UserNotFoundError()
    }),
    /** Inserts `inserted`, then a user whose user_id is taken; `error` is the answer. */
    failing: async () => await insertThen(async (uow) => { await uow.users.insert({ ...another(), userId: 'ada' }) })
  }
}

/**
 * The two error answers every guarded transaction gives alike, whatever the database: the use
 * case's own answer (a 404 from what it read) from the first run, nothing made; and a failure,
 * which the ordinary transaction runs again, its error the answer, nothing landing.
 */
export async function checkErrorAnswers (t: Test, cases: ReturnType<typeof guardedCases>): Promise<void> {
  const answered = await cases.answering()
  t.equal(answered.runs, 1)
  t.type(answered.error, UserNotFoundError)
  t.notOk(await cases.exists(answered.inserted))

  const failed = await cases.failing()
  t.equal(failed.runs, 2)
  t.type(failed.error, UserIdTakenError)
  t.notOk(await cases.exists(failed.inserted))
}

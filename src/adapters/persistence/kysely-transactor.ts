import type { Kysely } from 'kysely'
import type { Transactor, UnitOfWork } from '../../application/ports.js'
import { UsersError } from '../../domain/errors.js'
import { isRetryable } from './database-errors.js'
import { kyselyIdempotencyStore, type IdempotencyQueries } from './kysely-idempotency-store.js'
import { kyselyUserRepository, type UserQueries } from './kysely-user-repository.js'
import { HeldWritesInDoubt, recordingWrites, writeHolder } from './prepared.js'
import type { OpenSnapshot } from './read-snapshot.js'
import type { DatabaseSchema } from './schema.js'

const MAX_ATTEMPTS = 10
// Each round of a compare-and-swap race has a winner, so n racers need at most n rounds.
const MAX_OPTIMISTIC_ATTEMPTS = 200

export interface Queries { users: UserQueries, idempotency: IdempotencyQueries }

function unitOfWork (db: Kysely<DatabaseSchema>, queries: Queries, lockReads: boolean): UnitOfWork {
  return { users: kyselyUserRepository(db, queries.users, lockReads), idempotency: kyselyIdempotencyStore(db, queries.idempotency) }
}

async function retried<T> (attempts: number, run: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run()
    } catch (error) {
      if (!isRetryable(error) || attempt === attempts) throw error
    }
  }
}

/**
 * PostgreSQL: READ COMMITTED transactions whose reads lock rows. SQLite: the driver begins them
 * `IMMEDIATE`, taking the write lock up front, so transactions of several processes on one file serialise
 * instead of failing at their first write. Either way a transaction the database aborts for a
 * deadlock, serialisation failure or busy lock is run again, never reported.
 */
export function kyselyTransactor (db: Kysely<DatabaseSchema>, queries: Queries, openSnapshot: () => Promise<OpenSnapshot>): Transactor {
  async function once<T> (work: (uow: UnitOfWork) => Promise<T>): Promise<T> {
    return await db.transaction().execute(async (trx) => await work(unitOfWork(trx, queries, true)))
  }

  const outside = unitOfWork(db, queries, false)
  const transaction = async <T>(work: (uow: UnitOfWork) => Promise<T>): Promise<T> => await retried(MAX_ATTEMPTS, async () => await once(work))
  const holder = writeHolder(db)
  return {
    transaction,
    optimistic: async (work) => await retried(MAX_OPTIMISTIC_ATTEMPTS, async () => await work(outside)),
    // SQLite with its thread, PostgreSQL with its pipelined connection: `work` runs with its
    // writes held back, and they go there together, made in one transaction. Any other failure,
    // a refused write included, and the ordinary transaction runs `work` again, which reads
    // under its lock and answers it; but not writes that may have been made, nor the use case's
    // own answer (a 404, a 409 from what it read), which held nothing and is as true as
    // `optimistic`'s.
    guardedTransaction: holder === undefined
      ? transaction
      : async (work) => {
        if (holder.available()) {
          const recording = recordingWrites(db)
          try {
            const made = await work(unitOfWork(recording.db, queries, false))
            if (await holder.commit(recording.writes)) return made
          } catch (error) {
            if (error instanceof HeldWritesInDoubt || error instanceof UsersError) throw error
          }
        }
        return await transaction(work)
      },
    readSnapshot: async () => {
      const snapshot = await openSnapshot()
      return { users: kyselyUserRepository(snapshot.db, queries.users, false), close: snapshot.close }
    }
  }
}

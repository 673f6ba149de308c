import { IdempotencyInProgressError, IdempotencyKeyReusedError } from '../domain/errors.js'
import type { Clock, IdempotencyRecord, IdempotencyStore, StoredResponse, Transactor, UnitOfWork } from './ports.js'

export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000
/** How long a request that died holds its key. */
export const IDEMPOTENCY_LOCK_MS = 60 * 1000

export interface IdempotentRequest {
  /** Whose keys these are: the API key's id. */
  scope: string
  key: string
  /** A hash of method, path, If-Match and body: "the same request". */
  fingerprint: string
}

/**
 * Runs a request at most once per (scope, key): the first run's response is stored in the same
 * transaction as its change and replayed to every retry with the same fingerprint.
 *
 * `work` makes the change and the response inside one transaction. `storedFailure` says which
 * thrown errors are answers to keep (a 404, a 409 ...): those are stored and rethrown; any other
 * error releases the key, so the client may retry. Throws `IdempotencyKeyReusedError` for a
 * different request under the same key, `IdempotencyInProgressError` while the first still runs.
 */
export function idempotent ({ transactor, store, clock }: { transactor: Transactor, store: IdempotencyStore, clock: Clock }) {
  async function claim (request: IdempotentRequest): Promise<StoredResponse | undefined> {
    const now = clock.now()
    const fresh: IdempotencyRecord = { fingerprint: request.fingerprint, response: undefined, lockedUntil: now + IDEMPOTENCY_LOCK_MS, expiresAt: now + IDEMPOTENCY_TTL_MS }
    const existing = await store.claim(request.scope, request.key, fresh)
    if (existing === undefined) return undefined
    const expired = existing.expiresAt <= now
    if (!expired) {
      if (existing.fingerprint !== request.fingerprint) throw new IdempotencyKeyReusedError()
      if (existing.response !== undefined) return existing.response
      if (existing.lockedUntil > now) throw new IdempotencyInProgressError()
    }
    // Expired, or abandoned by a request that died: take it over, unless another retry just did.
    if (!await store.takeOver(request.scope, request.key, existing, fresh)) throw new IdempotencyInProgressError()
    return undefined
  }

  return async function run (
    request: IdempotentRequest,
    work: (uow: UnitOfWork) => Promise<StoredResponse>,
    storedFailure: (error: unknown) => StoredResponse | undefined
  ): Promise<{ response: StoredResponse, replayed: boolean }> {
    const replay = await claim(request)
    if (replay !== undefined) return { response: replay, replayed: true }
    try {
      const response = await transactor.transaction(async (uow) => {
        const made = await work(uow)
        await uow.idempotency.complete(request.scope, request.key, made)
        return made
      })
      return { response, replayed: false }
    } catch (error) {
      const failure = storedFailure(error)
      // Nothing changed (the transaction rolled back), so the answer is stored on its own.
      if (failure !== undefined) await store.complete(request.scope, request.key, failure)
      else await store.release(request.scope, request.key).catch(() => {})
      throw error
    }
  }
}

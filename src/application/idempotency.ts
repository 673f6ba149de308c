import { IdempotencyInProgressError, IdempotencyKeyReusedError } from '../domain/errors.js'
import type { Clock, IdempotencyRecord, IdempotencyStore, StoredResponse, Transactor, UnitOfWork } from './ports.js'

export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000
/** How long a request that died holds its key. */
export const IDEMPOTENCY_LOCK_MS = 60 * 1000

export interface IdempotentRequest {
  /** Whose keys these are: the API key's id. */
  scope: string
  key: string
  /** A hash of method, path, If-Match (If-None-Match too, when sent) and body: "the same request". */
  fingerprint: string
}

/**
 * Runs a request at most once per (scope, key): the first run's response is stored in the same
 * transaction as its change and replayed to every retry with the same fingerprint.
 *
 * `work` makes the change and the response inside one transaction, every write of it guarded by
 * what it read (see `Transactor.guardedTransaction`), as the use cases' are. `storedFailure`
 * says which thrown errors are answers to keep (a 404, a 409 ...): those are stored and
 * rethrown; any other error releases the key, so the client may retry. Throws
 * `IdempotencyKeyReusedError` for a different request under the same key,
 * `IdempotencyInProgressError` while the first still runs.
 */
export function idempotent ({ transactor, store, clock }: { transactor: Transactor, store: IdempotencyStore, clock: Clock }) {
  /** Claims the key (returning the claim's `lockedUntil`), or returns the stored response to replay. */
  async function claim (request: IdempotentRequest): Promise<{ lockedUntil: number } | { replay: StoredResponse }> {
    const now = clock.now()
    const fresh: IdempotencyRecord = { fingerprint: request.fingerprint, response: undefined, lockedUntil: now + IDEMPOTENCY_LOCK_MS, expiresAt: now + IDEMPOTENCY_TTL_MS }
    const existing = await store.claim(request.scope, request.key, fresh)
    if (existing === undefined) return fresh
    const expired = existing.expiresAt <= now
    if (!expired) {
      const replay = answerOf(existing, request)
      if (replay !== undefined) return { replay }
      if (existing.lockedUntil > now) throw new IdempotencyInProgressError()
    }
    // Expired, or abandoned by a request that died: take it over, unless another retry just did.
    if (!await store.takeOver(request.scope, request.key, existing, fresh)) throw new IdempotencyInProgressError()
    return fresh
  }

  /**
   * What a request whose claim was taken over answers (it ran past the lock, and a retry took the
   * key): the retry's response once stored, else "in progress". Its own change was rolled back.
   */
  async function afterTakeOver (request: IdempotentRequest): Promise<{ response: StoredResponse, replayed: boolean }> {
    const record = await store.find(request.scope, request.key)
    const replay = record === undefined ? undefined : answerOf(record, request)
    if (replay === undefined) throw new IdempotencyInProgressError()
    return { response: replay, replayed: true }
  }

  return async function run (
    request: IdempotentRequest,
    work: (uow: UnitOfWork) => Promise<StoredResponse>,
    storedFailure: (error: unknown) => StoredResponse | undefined
  ): Promise<{ response: StoredResponse, replayed: boolean }> {
    const claimed = await claim(request)
    if ('replay' in claimed) return { response: claimed.replay, replayed: true }
    const { lockedUntil } = claimed
    try {
      const inTransaction = async (uow: UnitOfWork): Promise<StoredResponse> => {
        const made = await work(uow)
        // Taken over since: this change must not land beside the other request's.
        if (!await uow.idempotency.complete(request.scope, request.key, lockedUntil, made)) throw new ClaimTakenOver()
        return made
      }
      const response = transactor.guardedTransaction === undefined
        ? await transactor.transaction(inTransaction)
        : await transactor.guardedTransaction(inTransaction)
      return { response, replayed: false }
    } catch (error) {
      if (error instanceof ClaimTakenOver) return await afterTakeOver(request)
      const failure = storedFailure(error)
      if (failure === undefined) {
        await store.release(request.scope, request.key, lockedUntil).catch(() => {})
        throw error
      }
      // Nothing changed (the transaction rolled back), so the answer is stored on its own.
      if (!await store.complete(request.scope, request.key, lockedUntil, failure)) return await afterTakeOver(request)
      throw error
    }
  }
}

/** The stored response of `record` for `request`; throws when the key was used for another request. */
function answerOf (record: IdempotencyRecord, request: IdempotentRequest): StoredResponse | undefined {
  if (record.fingerprint !== request.fingerprint) throw new IdempotencyKeyReusedError()
  return record.response
}

class ClaimTakenOver extends Error {}

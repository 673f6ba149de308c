import { PreconditionFailedError, UserIdTakenError, UserNotFoundError, ValidationError } from '../domain/errors.js'
import { ifMatchAllows, ifNoneMatchAllows, parseIfMatch, parseIfNoneMatch } from '../domain/if-match.js'
import { applyProfileChanges, FIELD_MESSAGES, isValidUserId, parseProfileChanges } from '../domain/profile-rules.js'
import { toProfile, userEtag, type UserProfile } from '../domain/user.js'
import type { Clock, Transactor, UnitOfWork, UserSnapshot } from './ports.js'

export interface UpdateUserProfileCommand {
  appId: string
  /** The user's current `user_id`. */
  userId: string
  /** Any of `name`, `email`, `userId`, `metadata` (a JSON Merge Patch). */
  changes: unknown
  /** An `If-Match` value: `*` or entity tags; the update happens only when one matches. */
  ifMatch?: string | undefined
  /**
   * An `If-None-Match` value: `*` or entity tags; the update happens only when none matches
   * (weakly: `W/"x"` matches `"x"`). `*` matches any user, so it always refuses an update.
   */
  ifNoneMatch?: string | undefined
  /**
   * A read of this user made earlier in the request, to start from. Only the first attempt does
   * (inside `uow` too): if the user has changed since, its write is refused, and the next attempt,
   * or the transaction's next run, reads afresh.
   */
  snapshot?: UserSnapshot | undefined
}

export const IF_MATCH_MESSAGE = 'must be * or a list of entity tags'

/**
 * The command's appId for a read or an update. A plain JavaScript caller's non-string appId names
 * no app, so it is answered as a missing user, as an unknown app is.
 */
export function checkAppIdArgument (appId: unknown): string {
  if (typeof appId !== 'string') throw new UserNotFoundError()
  return appId
}

/** Checks the command's user_id, which needs no database; a `ValidationError` naming `path` if it is not one. */
export function checkUserIdArgument (userId: unknown, path = '/userId'): string {
  if (!isValidUserId(userId)) throw new ValidationError([{ path, message: FIELD_MESSAGES.userId }])
  return userId
}

/** The command's snapshot when it is of the same app and user_id, else undefined. */
export function snapshotOf (command: { appId: string, snapshot?: UserSnapshot | undefined }, userId: string): UserSnapshot | undefined {
  const snapshot = command.snapshot
  return snapshot?.appId === command.appId && snapshot.userId === userId ? snapshot : undefined
}

/** Parses a precondition's value; a `ValidationError` naming `path` when it is not one. */
function checkCondition<T> (value: string | undefined, parse: (value: string) => T | undefined, path: string): T | undefined {
  if (value === undefined) return undefined
  // In-process callers in plain JavaScript can pass anything.
  const parsed = typeof value === 'string' ? parse(value) : undefined
  if (parsed === undefined) throw new ValidationError([{ path, message: IF_MATCH_MESSAGE }])
  return parsed
}

/**
 * Update User Profile: applies `changes` to the user atomically against the stored row (the
 * metadata merge never works on a stale copy: the write is refused if the row changed since it
 * was read, and the update runs again). Pass `uow` to run inside a caller's transaction, and
 * `snapshot` to save the first read.
 *
 * Throws, in this order: `ValidationError` (bad input), `UserNotFoundError`,
 * `PreconditionFailedError` (`ifMatch` matches no current tag, or `ifNoneMatch` matches it),
 * `ValidationError` (merged metadata over a limit), `UserIdTakenError`, `EmailTakenError`.
 */
export function updateUserProfile ({ transactor, clock }: { transactor: Transactor, clock: Clock }) {
  // A transaction that runs again calls this function again, with the same command: a snapshot
  // started from once in a transaction is not started from again, so the rerun reads under the
  // transaction's lock. (Outside one, `work` itself runs again, and forgets the snapshot.)
  const startedInTransaction = new WeakSet<UserSnapshot>()
  const firstStartInTransaction = (snapshot: UserSnapshot | undefined): UserSnapshot | undefined => {
    if (snapshot === undefined || startedInTransaction.has(snapshot)) return undefined
    startedInTransaction.add(snapshot)
    return snapshot
  }

  return async function (command: UpdateUserProfileCommand, uow?: UnitOfWork): Promise<UserProfile> {
    const userId = checkUserIdArgument(command.userId)
    const ifMatch = checkCondition(command.ifMatch, parseIfMatch, '/ifMatch')
    const ifNoneMatch = checkCondition(command.ifNoneMatch, parseIfNoneMatch, '/ifNoneMatch')
    const changes = parseProfileChanges(command.changes)
    checkAppIdArgument(command.appId)

    // The first attempt may start from the snapshot, in a transaction too: the guarded write
    // refuses it if the row has changed since (a retryable error: the transaction runs again),
    // and the next attempt reads afresh. That saves a transaction a round trip: its write takes
    // the row's lock as its locking read would have.
    let snapshot = snapshotOf(command, userId)
    if (uow !== undefined) snapshot = firstStartInTransaction(snapshot)
    const work = async ({ users }: UnitOfWork): Promise<UserProfile> => {
      const current = snapshot !== undefined ? snapshot.user : await users.findByUserId(command.appId, userId)
      snapshot = undefined
      if (current === undefined) throw new UserNotFoundError()
      if (ifMatch !== undefined && !ifMatchAllows(ifMatch, userEtag(current))) throw new PreconditionFailedError()
      if (ifNoneMatch !== undefined && !ifNoneMatchAllows(ifNoneMatch, userEtag(current))) throw new PreconditionFailedError('ifNoneMatch')
      const next = applyProfileChanges(current, changes, clock.now())
      if (next === current) return toProfile(current)
      // The unique index decides races; this read only makes a double conflict name user_id first.
      if (next.userId !== current.userId && await users.userIdExists(command.appId, next.userId)) throw new UserIdTakenError()
      await users.update(next, current)
      return toProfile(next)
    }
    // One guarded UPDATE is the only write, so a compare-and-swap suffices outside a caller's transaction.
    return uow === undefined ? await transactor.optimistic(work) : await work(uow)
  }
}

import { UserNotFoundError } from '../domain/errors.js'
import { toProfile, type UserProfile } from '../domain/user.js'
import type { AppRepository, IdempotencyStore, UserRepository } from './ports.js'
import { checkAppIdArgument, checkUserIdArgument } from './update-user-profile.js'

export interface DeletedUser {
  /** The user as it was. */
  user: UserProfile
  /** How many answers stored for `Idempotency-Key`s that carried the user were deleted with it. */
  storedResponses: number
}

interface DeleteUserDeps {
  users: UserRepository
  apps: Pick<AppRepository, 'listKeys'>
  idempotency: Pick<IdempotencyStore, 'deleteAnswersHolding'>
}

/**
 * Deletes one user of an app (an operator's erasure: the HTTP API has no DELETE), then the
 * answers stored under the app's keys that carry it (found by its `klaim_id`, which no rename
 * changes). The row goes in one statement: an update that read the user before finds no row to
 * write, reads again, and answers 404; a keyed one stores its answer in the same transaction as
 * its write, so an answer that carries the user was stored before the delete, and is found.
 * Throws `ValidationError` (malformed userId) or `UserNotFoundError`.
 */
export function deleteUser ({ users, apps, idempotency }: DeleteUserDeps) {
  return async function (command: { appId: string, userId: string }): Promise<DeletedUser> {
    const userId = checkUserIdArgument(command.userId)
    const appId = checkAppIdArgument(command.appId)
    const user = await users.deleteByUserId(appId, userId)
    if (user === undefined) throw new UserNotFoundError()
    const scopes = (await apps.listKeys(appId)).map((key) => key.keyId)
    const storedResponses = await idempotency.deleteAnswersHolding(scopes, user.klaimId)
    return { user: toProfile(user), storedResponses }
  }
}

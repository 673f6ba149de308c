import { UserNotFoundError } from '../domain/errors.js'
import { toProfile, type UserProfile } from '../domain/user.js'
import type { UserRepository } from './ports.js'
import { checkAppIdArgument, checkUserIdArgument } from './update-user-profile.js'

/**
 * Deletes one user of an app (an operator's erasure: the HTTP API has no DELETE), and returns
 * the user as it was. One statement: an update that read the user before finds no row to write,
 * reads again, and answers 404. Throws `ValidationError` (malformed userId) or `UserNotFoundError`.
 */
export function deleteUser ({ users }: { users: UserRepository }) {
  return async function (command: { appId: string, userId: string }): Promise<UserProfile> {
    const userId = checkUserIdArgument(command.userId)
    const user = await users.deleteByUserId(checkAppIdArgument(command.appId), userId)
    if (user === undefined) throw new UserNotFoundError()
    return toProfile(user)
  }
}

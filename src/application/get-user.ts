import { UserNotFoundError } from '../domain/errors.js'
import { toProfile, type UserProfile } from '../domain/user.js'
import type { UserRepository } from './ports.js'
import { checkUserIdArgument } from './update-user-profile.js'

/** Reads one user of an app. Throws `ValidationError` (malformed userId) or `UserNotFoundError`. */
export function getUser ({ users }: { users: UserRepository }) {
  return async function (command: { appId: string, userId: string }): Promise<UserProfile> {
    const userId = checkUserIdArgument(command.userId)
    const user = await users.findByUserId(command.appId, userId)
    if (user === undefined) throw new UserNotFoundError()
    return toProfile(user)
  }
}

import { UserNotFoundError } from '../domain/errors.js'
import { toProfile, type UserProfile } from '../domain/user.js'
import type { UserRepository, UserSnapshot } from './ports.js'
import { checkAppIdArgument, checkUserIdArgument, snapshotOf } from './update-user-profile.js'

/**
 * Reads one user of an app, or takes it from `snapshot` (see `UserSnapshot`). Throws
 * `ValidationError` (malformed userId) or `UserNotFoundError`.
 */
export function getUser ({ users }: { users: UserRepository }) {
  return async function (command: { appId: string, userId: string, snapshot?: UserSnapshot | undefined }): Promise<UserProfile> {
    const userId = checkUserIdArgument(command.userId)
    checkAppIdArgument(command.appId)
    const snapshot = snapshotOf(command, userId)
    const user = snapshot !== undefined ? snapshot.user : await users.findByUserId(command.appId, userId)
    if (user === undefined) throw new UserNotFoundError()
    return toProfile(user)
  }
}

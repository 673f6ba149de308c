import { toProfile, type UserProfile } from '../domain/user.js'
import { unknownApp } from './apps.js'
import type { AppRepository, UserRepository } from './ports.js'

/** Users are read this many at a time. */
export const EXPORT_PAGE = 1000

/**
 * Every user of an app, in `user_id` order, read a page at a time (an operator's export, the
 * CLI's `users export`); memory stays at one page however many users the app has. The pages are
 * separate reads, not one snapshot: a user renamed while the export runs can be missed or listed
 * twice. Throws `ValidationError` for an unknown app (at the first step of the iteration).
 */
export function exportUsers ({ users, apps }: { users: UserRepository, apps: Pick<AppRepository, 'appExists'> }, pageSize = EXPORT_PAGE) {
  return async function * ({ appId }: { appId: string }): AsyncGenerator<UserProfile, void, undefined> {
    if (typeof appId !== 'string' || !await apps.appExists(appId)) throw unknownApp()
    let after: string | undefined
    for (;;) {
      const page = await users.listPage(appId, after, pageSize)
      for (const user of page) yield toProfile(user)
      if (page.length < pageSize) return
      after = page[page.length - 1]?.userId
    }
  }
}

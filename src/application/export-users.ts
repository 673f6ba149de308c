import { toProfile, type UserProfile } from '../domain/user.js'
import { unknownApp } from './apps.js'
import type { AppRepository, Transactor } from './ports.js'

/** Users are read this many at a time. */
export const EXPORT_PAGE = 1000

/**
 * Every user of an app, in `user_id` order, as they all were when the export began (one read
 * snapshot: a user renamed, created or deleted while it runs is listed as before, or not at
 * all), read a page at a time (an operator's export, the CLI's `users export`); memory stays at
 * one page however many users the app has. Writes go on meanwhile (see
 * Transactor.readSnapshot). The snapshot ends with the iteration: run it to its end, or stop it
 * with `break` or `return()` (left 10 minutes without a next step, it ends by itself, and that
 * step fails). Throws `ValidationError` for an unknown app (at the first step of
 * the iteration).
 */
export function exportUsers ({ apps, transactor }: { apps: Pick<AppRepository, 'appExists'>, transactor: Pick<Transactor, 'readSnapshot'> }, pageSize = EXPORT_PAGE) {
  return async function * ({ appId }: { appId: string }): AsyncGenerator<UserProfile, void, undefined> {
    if (typeof appId !== 'string' || !await apps.appExists(appId)) throw unknownApp()
    const { users, close } = await transactor.readSnapshot()
    try {
      let after: string | undefined
      for (;;) {
        const page = await users.listPage(appId, after, pageSize)
        for (const user of page) yield toProfile(user)
        if (page.length < pageSize) return
        after = page[page.length - 1]?.userId
      }
    } finally {
      await close()
    }
  }
}

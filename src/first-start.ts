import { chmodSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { UsersService } from './users-service.js'

export const FIRST_KEY_FILE = 'first-api-key.txt'

/** What a start found: `keyFile` when it created the app `default`; `noApp` when no app is left. */
export interface FirstStart {
  keyFile?: string
  noApp: boolean
}

/**
 * On a database that has never held an app, creates the app `default` and writes its key to a
 * file only the owner can read. Creates nothing when apps exist, when another process starting
 * at the same time created the first, or when the apps were all deleted (`noApp`): a deleted
 * last app is not brought back as a new one with a new key.
 */
export async function ensureFirstApp (service: Pick<UsersService, 'listApps' | 'createFirstApp'>, folder: string): Promise<FirstStart> {
  // Most starts find apps: one read, without the first start's lock.
  if ((await service.listApps()).length > 0) return { noApp: false }
  const app = await service.createFirstApp()
  if (app === undefined) return { noApp: (await service.listApps()).length === 0 }
  mkdirSync(folder, { recursive: true, mode: 0o700 })
  const path = join(folder, FIRST_KEY_FILE)
  writeFileSync(path, `${app.apiKey}\n`, { mode: 0o600 })
  chmodSync(path, 0o600) // mode applies only when the file is new
  return { keyFile: path, noApp: false }
}

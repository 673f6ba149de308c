import { chmodSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { UsersService } from './users-service.js'

export const FIRST_KEY_FILE = 'first-api-key.txt'

/**
 * On a database with no app at all, creates the app `default` and writes its key to a file
 * only the owner can read. Returns the file's path, or undefined when apps exist already (or
 * another process starting at the same time created the first).
 */
export async function ensureFirstApp (service: Pick<UsersService, 'listApps' | 'createFirstApp'>, folder: string): Promise<string | undefined> {
  // Most starts find apps: one read, without the first start's lock.
  if ((await service.listApps()).length > 0) return undefined
  const app = await service.createFirstApp()
  if (app === undefined) return undefined
  mkdirSync(folder, { recursive: true, mode: 0o700 })
  const path = join(folder, FIRST_KEY_FILE)
  writeFileSync(path, `${app.apiKey}\n`, { mode: 0o600 })
  chmodSync(path, 0o600) // mode applies only when the file is new
  return path
}

import { randomBytes } from 'node:crypto'
import { closeSync, fsyncSync, lstatSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { UsersService } from './users-service.js'

export const FIRST_KEY_FILE = 'first-api-key.txt'

/** What a start found: `keyFile` when it created the app `default`; `noApp` when no app is left. */
export interface FirstStart {
  keyFile?: string
  noApp: boolean
}

const reason = (error: unknown): string => error instanceof Error ? error.message : String(error)

/**
 * On a database that has never held an app, creates the app `default` and writes its key to a
 * file in `folder` only the owner can read. Creates nothing when apps exist, when another process
 * starting at the same time created the first, or when the apps were all deleted (`noApp`): a
 * deleted last app is not brought back as a new one with a new key.
 *
 * The key is written and synced to disk before the app is created, so a folder it cannot write
 * to (or a full disk) stops the start with nothing created, not with an app whose only key was
 * lost. Each process writes a file of its own; the one whose app was created moves it into place,
 * the others remove theirs, so that no start undoes another's.
 */
export async function ensureFirstApp (service: Pick<UsersService, 'listApps' | 'createFirstApp'>, folder: string): Promise<FirstStart> {
  // Most starts find apps: one read, without the first start's lock or the file.
  if ((await service.listApps()).length > 0) return { noApp: false }
  const path = join(folder, FIRST_KEY_FILE)
  const pending = `${path}.${randomBytes(6).toString('hex')}.tmp`
  const cannotWrite = (error: unknown): Error =>
    new Error(`cannot write the first app's API key, so none was created (${reason(error)})`, { cause: error })
  let file: number
  try {
    mkdirSync(folder, { recursive: true, mode: 0o700 })
    // The one thing the key's file could not be moved onto, once the app exists.
    if (lstatSync(path, { throwIfNoEntry: false })?.isDirectory() === true) throw new Error(`${path} is a directory`)
    file = openSync(pending, 'wx', 0o600)
  } catch (error) {
    throw cannotWrite(error)
  }
  let holdsTheOnlyKey = false
  try {
    const app = await service.createFirstApp((created) => {
      try {
        writeFileSync(file, `${created.apiKey}\n`)
        fsyncSync(file)
      } catch (error) {
        throw cannotWrite(error)
      }
    })
    if (app === undefined) return { noApp: (await service.listApps()).length === 0 }
    try {
      renameSync(pending, path)
    } catch (error) {
      holdsTheOnlyKey = true
      throw new Error(`created the app "default" (${app.appId}), whose API key is in ${pending}: it could not be renamed ${FIRST_KEY_FILE} (${reason(error)})`, { cause: error })
    }
    return { keyFile: path, noApp: false }
  } finally {
    closeSync(file)
    if (!holdsTheOnlyKey) rmSync(pending, { force: true })
  }
}

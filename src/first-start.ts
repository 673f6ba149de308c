import { randomBytes } from 'node:crypto'
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { syncPath } from './adapters/system.js'
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
 * The key's file is written, synced and moved into place in the transaction that creates the
 * app, before its commit: a folder it cannot write to (or a full disk) stops the start with
 * nothing created, and an app never exists without its key's file, even after a crash.
 *
 * Should the commit itself fail after the file is in place, the key is looked up: a commit that
 * took effect though its answer was lost (PostgreSQL's connection cut after `COMMIT` was sent)
 * is a start that created the app. Otherwise the start fails with the commit's error, and the
 * file holds a key that opens nothing, which the next start, finding no app, replaces.
 */
export async function ensureFirstApp (service: Pick<UsersService, 'listApps' | 'createFirstApp' | 'authenticate'>, folder: string): Promise<FirstStart> {
  // Most starts find apps: one read, without the first start's lock or the file.
  if ((await service.listApps()).length > 0) return { noApp: false }
  const path = join(folder, FIRST_KEY_FILE)
  let kept: string | undefined
  let app
  try {
    app = await service.createFirstApp(({ apiKey }) => {
      try {
        writeKeyFile(folder, path, apiKey)
      } catch (error) {
        throw new Error(`cannot write the first app's API key, so none was created (${reason(error)})`, { cause: error })
      }
      kept = apiKey
    })
  } catch (error) {
    if (kept !== undefined && await service.authenticate(kept).catch(() => undefined) !== undefined) return { keyFile: path, noApp: false }
    throw error
  }
  if (app === undefined) return { noApp: (await service.listApps()).length === 0 }
  return { keyFile: path, noApp: false }
}

/**
 * Writes `apiKey` to `path` in `folder` (0600; the folder made 0700 if need be), synced to disk,
 * through a file of its own moved into place: a reader never finds half a key. Leaves nothing
 * behind when it fails.
 */
function writeKeyFile (folder: string, path: string, apiKey: string): void {
  mkdirSync(folder, { recursive: true, mode: 0o700 })
  const pending = `${path}.${randomBytes(6).toString('hex')}.tmp`
  const file = openSync(pending, 'wx', 0o600)
  let moved = false
  try {
    writeFileSync(file, `${apiKey}\n`)
    fsyncSync(file)
    renameSync(pending, path)
    moved = true
    syncPath(folder)
  } catch (error) {
    // Once moved, the file at `path` is this one (the caller holds the first start's lock).
    rmSync(moved ? path : pending, { force: true })
    throw error
  } finally {
    closeSync(file)
  }
}

import { closeSync, existsSync, openSync, rmSync, statSync } from 'node:fs'
import { dirname } from 'node:path'
import Database from 'better-sqlite3'
import { syncPath } from '../system.js'
import { sqliteRuntimeProblem } from './sqlite-runtime.js'

/** A backup refused for a reason its operator can act on (the message says which). */
export class BackupRefused extends Error {}

/**
 * Writes a consistent copy of the SQLite database `filename` to `destination`, a new file of
 * mode 0600 (as the service creates the database), while servers go on reading and writing it: SQLite's
 * `VACUUM INTO` copies one snapshot (in WAL mode a reader holds up no writer) and compacts it.
 * SQLite does not sync the copy, so it is synced here, with its folder, before this returns.
 * The database must exist (a backup never creates one), and `destination` must not (a backup
 * never overwrites a file); a failed backup leaves no file behind. Returns the copy's size in
 * bytes. It blocks the calling thread while it copies: for the command line, not for a server.
 */
export function backupSqliteFile (filename: string, destination: string): number {
  const runtimeProblem = sqliteRuntimeProblem(process.versions.node)
  if (runtimeProblem !== undefined) throw new BackupRefused(runtimeProblem)
  let db
  try {
    db = new Database(filename, { fileMustExist: true })
  } catch (error) {
    throw new BackupRefused(existsSync(filename) ? `Cannot open ${filename}: ${(error as Error).message}` : `There is no SQLite database at ${filename}.`)
  }
  try {
    try {
      closeSync(openSync(destination, 'wx', 0o600))
    } catch (error) {
      const { code, message } = error as NodeJS.ErrnoException
      throw new BackupRefused(code === 'EEXIST' ? `${destination} already exists: a backup never overwrites a file.` : `Cannot create ${destination}: ${message}`)
    }
    try {
      // A server's write may hold the lock for a moment; the snapshot needs only a read.
      db.pragma('busy_timeout = 5000')
      db.prepare('vacuum into ?').run(destination)
      syncPath(destination)
      syncPath(dirname(destination))
      return statSync(destination).size
    } catch (error) {
      rmSync(destination, { force: true })
      throw new BackupRefused(`The backup failed, and ${destination} was removed: ${(error as Error).message}`)
    }
  } finally {
    db.close()
  }
}

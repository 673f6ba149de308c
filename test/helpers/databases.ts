import { appendFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import tap, { type Test } from 'tap'

export type DialectName = 'sqlite' | 'postgres'

export interface TestDatabase {
  dialect: DialectName
  /** A fresh, empty database of its own; dropped at the end of `t`. */
  fresh(t: Test): Promise<string>
  /** Like `fresh`, but one that several connections or processes can open (a file for SQLite). */
  freshShared(t: Test): Promise<string>
}

// A file, as in production: statements outside transactions then run on the SQLite thread, the
// rest on the event loop's connection (an in-memory database has only the latter).
const sqlite: TestDatabase = {
  dialect: 'sqlite',
  async fresh (t) {
    record('sqlite')
    const dir = mkdtempSync(join(tmpdir(), 'klaim-sqlite-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    return `sqlite:${join(dir, 'users.db')}`
  },
  async freshShared (t) {
    return await this.fresh(t)
  }
}

function postgres (adminUrl: string): TestDatabase {
  // One connection per test process creates and drops every database. A connection for each
  // create and each drop was a server process apiece: 2.3 more CPU-s of the server per 30
  // databases, and each database took twice as long.
  let admin: Promise<pg.Client> | undefined
  const adminClient = async (): Promise<pg.Client> => {
    admin ??= (async () => {
      const client = new pg.Client({ connectionString: adminUrl })
      await client.connect()
      tap.teardown(async () => await client.end())
      return client
    })()
    return await admin
  }
  return {
    dialect: 'postgres',
    async fresh (t) {
      record('postgres')
      const name = `t_${randomBytes(8).toString('hex')}`
      await (await adminClient()).query(`create database ${name}`)
      t.teardown(async () => { await (await adminClient()).query(`drop database if exists ${name} with (force)`) })
      const url = new URL(adminUrl)
      url.pathname = `/${name}`
      return url.toString()
    },
    async freshShared (t) {
      return await this.fresh(t)
    }
  }
}

const adminUrl = process.env.TEST_DATABASE_URL
/** SQLite always; PostgreSQL when `npm test` found or started one (TEST_DATABASE_URL). */
export const databases: TestDatabase[] = adminUrl === undefined || adminUrl === '' ? [sqlite] : [sqlite, postgres(adminUrl)]

/** Counts a fresh database per dialect, so `npm test` can report how many tests ran on each. */
function record (dialect: DialectName): void {
  const file = process.env.TEST_COUNTS_FILE
  if (file !== undefined) appendFileSync(file, `${dialect}\n`)
}

/** Runs `suite` once per database, as a subtest named after the dialect. */
export function eachDatabase (t: Test, suite: (t: Test, db: TestDatabase) => void | Promise<void>): void {
  for (const db of databases) t.test(db.dialect, async (t) => { await suite(t, db) })
}

/**
 * PostgreSQL when there is one. Else undefined, after a loud notice that `what` is skipped (a
 * pass, so the file is not empty); with REQUIRE_POSTGRES=1 (CI) a skip is a failure instead.
 */
export function postgresOrSkip (t: Test, what: string): TestDatabase | undefined {
  const postgres = databases.find((db) => db.dialect === 'postgres')
  if (postgres !== undefined) return postgres
  if (process.env.REQUIRE_POSTGRES === '1') throw new Error('REQUIRE_POSTGRES=1 but no TEST_DATABASE_URL')
  t.comment(`!!! no PostgreSQL (TEST_DATABASE_URL): ${what} are SKIPPED`)
  t.pass('skipped: no PostgreSQL')
  return undefined
}

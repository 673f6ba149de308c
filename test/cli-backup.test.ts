import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import Database from 'better-sqlite3'
import t, { type Test } from 'tap'
import { openUsersService } from '../src/users-service.js'

// The compiled CLI as an operator runs it (`npm test` builds first).
const CLI = join(resolve(import.meta.dirname, '..'), 'dist', 'adapters', 'cli', 'main.js')
const run = promisify(execFile)

function tempDir (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'klaim-backup-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function cli (databaseUrl: string, ...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return await run(process.execPath, [CLI, ...args], { env: { ...process.env, DATABASE_URL: databaseUrl } })
    .then(({ stdout, stderr }) => ({ code: 0, stdout, stderr }), (error: { code: number, stdout: string, stderr: string }) => error)
}

t.test('backup: a consistent copy (0600) of a database that is being written, which a server can open', async (t) => {
  const dir = tempDir(t)
  const databaseUrl = `sqlite:${join(dir, 'users.db')}`
  const service = await openUsersService({ databaseUrl })
  t.teardown(async () => { await service.close() })
  const { appId } = await service.createApp({ name: 'shop' })
  const USERS = 200
  for (let i = 0; i < USERS; i++) await service.createUser({ appId, email: `u${i}@example.com`, userId: `u${i}`, metadata: { n: 0 } })

  // Updates go on, from this process, for as long as the command runs in its own.
  const copy = join(dir, 'backup.db')
  const state = { done: false }
  const backup = cli(databaseUrl, 'backup', copy, '--json').finally(() => { state.done = true })
  let writes = 0
  while (!state.done) {
    await service.updateUserProfile({ appId, userId: `u${writes % USERS}`, changes: { metadata: { n: writes } } })
    writes++
  }
  const result = await backup
  t.equal(result.code, 0, result.stderr)
  t.same(JSON.parse(result.stdout), { database: join(dir, 'users.db'), backup: copy, bytes: statSync(copy).size })
  t.ok(writes > 0, `${writes} updates were made while the command ran`)
  t.equal(statSync(copy).mode & 0o777, 0o600, 'as private as the database')

  const saved = new Database(copy, { readonly: true })
  t.equal(saved.pragma('integrity_check', { simple: true }), 'ok')
  const rows = saved.prepare('select user_id, version from users').all() as Array<{ user_id: string, version: number }>
  saved.close()
  t.equal(rows.length, USERS, 'every user')
  for (const { user_id: userId, version } of rows) {
    const live = await service.getUser({ appId, userId })
    t.ok(version >= 1 && Number(live.etag.slice(1, -1).split('.')[1]) >= version, `${userId} at a version the database had`)
  }

  // Restoring is starting a service on the copy.
  const restored = await openUsersService({ databaseUrl: `sqlite:${copy}` })
  t.teardown(async () => { await restored.close() })
  t.equal((await restored.getUser({ appId, userId: 'u7' })).email, 'u7@example.com')
})

t.test('backup refuses, with exit code 1 and one line, what it must not do', async (t) => {
  const dir = tempDir(t)
  const databaseUrl = `sqlite:${join(dir, 'users.db')}`
  const service = await openUsersService({ databaseUrl })
  await service.close()

  const existing = join(dir, 'existing.db')
  writeFileSync(existing, 'keep me')
  t.match(await cli(databaseUrl, 'backup', existing), { code: 1, stdout: '', stderr: /already exists: a backup never overwrites a file/ })
  t.equal(readFileSync(existing, 'utf8'), 'keep me')

  const missing = join(dir, 'nowhere', 'users.db')
  t.match(await cli(`sqlite:${missing}`, 'backup', join(dir, 'a.db')), { code: 1, stderr: /There is no SQLite database at/ })
  t.notOk(existsSync(missing), 'no database was created to be copied')
  t.notOk(existsSync(join(dir, 'a.db')))

  t.match(await cli(databaseUrl, 'backup', join(dir, 'no-folder', 'b.db')), { code: 1, stderr: /Cannot create/ })

  const notADatabase = join(dir, 'text.db')
  writeFileSync(notADatabase, 'not a database, but long enough to have a header. '.repeat(20))
  t.match(await cli(`sqlite:${notADatabase}`, 'backup', join(dir, 'c.db')), { code: 1, stderr: /The backup failed, and .* was removed/ })
  t.notOk(existsSync(join(dir, 'c.db')), 'a failed backup leaves no file')

  for (const url of ['postgres://klaim@127.0.0.1:1/none', 'sqlite::memory:']) {
    t.match(await cli(url, 'backup', join(dir, 'd.db')), { code: 1, stderr: /back up PostgreSQL with its own tools/ }, url)
  }
  t.match(await cli(databaseUrl, 'backup'), { code: 2, stderr: /Usage: .* backup <file>/ })
})

import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { BackupRefused, backupSqliteFile } from '../../src/adapters/persistence/sqlite-backup.js'
import { sqliteRuntimeProblem } from '../../src/adapters/persistence/sqlite-runtime.js'
import { openUsersService } from '../../src/users-service.js'

t.test('the Node releases on which better-sqlite3 12 aborts the process are named', async (t) => {
  for (const version of ['20.12.0', '20.20.2', '22.0.0', '22.23.3', '26.4.0', '26.12.1', '27.0.0']) {
    t.equal(sqliteRuntimeProblem(version), undefined, `${version} runs SQLite`)
  }
  for (const version of ['24.0.0', '24.18.1', '24.19.0', '24.21.0', '26.0.0', '26.3.1']) {
    t.match(sqliteRuntimeProblem(version), `SQLite cannot run on Node ${version}: better-sqlite3 12 aborts the process`, `${version} is refused`)
  }
})

t.test('on such a release, SQLite is refused in words before anything is opened or created', async (t) => {
  const real = Object.getOwnPropertyDescriptor(process, 'versions')
  if (real === undefined) throw new Error('process.versions has no descriptor')
  Object.defineProperty(process, 'versions', { ...real, value: { ...process.versions, node: '24.21.0' } })
  t.teardown(() => { Object.defineProperty(process, 'versions', real) })
  const dir = mkdtempSync(join(tmpdir(), 'klaim-runtime-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })

  const message = /^SQLite cannot run on Node 24\.21\.0: .*Run Node 20\.12\+, 22 or 26\.4\+, or use PostgreSQL\.$/
  await t.rejects(openUsersService({ databaseUrl: `sqlite:${join(dir, 'data', 'users.db')}` }), { message })
  t.notOk(existsSync(join(dir, 'data')), 'no folder or database file was created')
  await t.rejects(openUsersService({ databaseUrl: 'sqlite::memory:' }), { message })
  let refused: unknown
  try {
    backupSqliteFile(join(dir, 'users.db'), join(dir, 'backup.db'))
  } catch (error) {
    refused = error
  }
  t.ok(refused instanceof BackupRefused, 'the backup is refused as the CLI reports its refusals')
  t.match(refused, { message })
  t.notOk(existsSync(join(dir, 'backup.db')))
})

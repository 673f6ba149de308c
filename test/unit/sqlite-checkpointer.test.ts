import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'
import t, { type Test } from 'tap'
import { sql } from '../../src/adapters/persistence/kysely.js'
import { openPersistence } from '../../src/adapters/persistence/open-persistence.js'
import { SqliteCheckpointer, WAL_SIZE_LIMIT_BYTES } from '../../src/adapters/persistence/sqlite-checkpointer.js'
import { sampleUser } from '../helpers/users.js'

function folder (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'klaim-checkpoint-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Whether the database file itself (not its WAL) holds `marker`. */
const inMainFile = (file: string, marker: string): boolean => readFileSync(file).includes(marker)

t.test('a worker thread copies the WAL into the database file; the request connection does not', async (t) => {
  const dir = folder(t)
  const file = join(dir, 'users.db')
  const errors: Error[] = []
  const persistence = await openPersistence({ databaseUrl: `sqlite:${file}`, sqliteBackgroundCheckpoints: { onError: (e) => errors.push(e) } })
  const appId = 'app_1'
  await persistence.apps.insertApp({ appId, name: 'app', createdAt: 1 })
  const pages = await sql<{ wal_autocheckpoint: number }>`pragma wal_autocheckpoint`.execute(persistence.db)
  t.same(pages.rows, [{ wal_autocheckpoint: 10_000 }], 'SQLite\'s own checkpoint is only a safety net')

  await persistence.users.insert(sampleUser({ appId, klaimId: 'k1', userId: 'marker-in-wal-3f9a', email: 'a@example.com' }))
  t.notOk(inMainFile(file, 'marker-in-wal-3f9a'), 'the commit went to the WAL')
  // The worker runs every 100 ms; wait for it, bounded.
  for (let i = 0; i < 100 && !inMainFile(file, 'marker-in-wal-3f9a'); i++) await sleep(20)
  t.ok(inMainFile(file, 'marker-in-wal-3f9a'), 'the worker checkpointed it')

  await persistence.close()
  t.notOk(existsSync(`${file}-wal`), 'closing stops the worker too: the last connection removes the WAL')
  t.same(errors, [])
})

t.test('without the option the request connection checkpoints as SQLite does by default', async (t) => {
  const file = join(folder(t), 'users.db')
  const persistence = await openPersistence({ databaseUrl: `sqlite:${file}` })
  t.teardown(async () => await persistence.close())
  const pages = await sql<{ wal_autocheckpoint: number }>`pragma wal_autocheckpoint`.execute(persistence.db)
  t.same(pages.rows, [{ wal_autocheckpoint: 1000 }])
})

t.test('a WAL grown past the limit is cut back to it when it starts over', async (t) => {
  const file = join(folder(t), 'users.db')
  const persistence = await openPersistence({ databaseUrl: `sqlite:${file}` })
  t.teardown(async () => await persistence.close())
  const limit = await sql<{ journal_size_limit: number }>`pragma journal_size_limit`.execute(persistence.db)
  t.same(limit.rows, [{ journal_size_limit: WAL_SIZE_LIMIT_BYTES }])

  // One transaction of 70 MB from a connection of its own (with SQLite's defaults): the WAL
  // holds all of it, and keeps its size once checkpointed.
  const other = new Database(file)
  t.teardown(() => other.close())
  const megabytes = WAL_SIZE_LIMIT_BYTES / 2 ** 20 + 6
  other.exec('create table bulk (b blob)')
  other.prepare('with recursive n(i) as (select 1 union all select i + 1 from n where i < ?) insert into bulk select randomblob(1048576) from n').run(megabytes)
  const checkpoint = other.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number, log: number, checkpointed: number }>
  t.same(checkpoint.map(({ busy, log, checkpointed }) => ({ busy, complete: log === checkpointed })), [{ busy: 0, complete: true }])
  t.ok(statSync(`${file}-wal`).size > megabytes * 2 ** 20, 'the WAL is at its largest')

  // The service's next write starts the WAL over from its beginning, and cuts the file back.
  await persistence.apps.insertApp({ appId: 'app_1', name: 'app', createdAt: 1 })
  t.ok(statSync(`${file}-wal`).size <= WAL_SIZE_LIMIT_BYTES, 'cut back to the limit')
})

t.test('a worker that fails is reported, and stopping it still resolves', async (t) => {
  const errors: Error[] = []
  const checkpointer = new SqliteCheckpointer(join(folder(t), 'missing', 'users.db'), (e) => errors.push(e))
  await checkpointer.stop()
  t.equal(errors.length, 1)
  t.match(errors[0]?.message, /unable to open database|directory does not exist/)
})

import { execFile } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { Worker } from 'node:worker_threads'
import BetterSqlite3 from 'better-sqlite3'
import t, { type Test } from 'tap'
import { isUnavailable } from '../../src/adapters/persistence/database-errors.js'
import { CompiledQuery, sql } from '../../src/adapters/persistence/kysely.js'
import { openPersistence, type Persistence } from '../../src/adapters/persistence/open-persistence.js'
import { HOT_STATEMENTS } from '../../src/adapters/persistence/prepared.js'
import { SqliteThread } from '../../src/adapters/persistence/sqlite-thread.js'
import type { User } from '../../src/domain/user.js'
import { checkErrorAnswers, guardedCases } from '../helpers/guarded.js'
import { sampleUser } from '../helpers/users.js'

/** A folder of its own for the test, removed at its end. */
function folder (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'klaim-thread-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A fresh database file, as in production: with its SQLite thread. Closed at the end of `t`. */
async function openFile (t: Test): Promise<Persistence> {
  const persistence = await openPersistence({ databaseUrl: `sqlite:${join(folder(t), 'users.db')}` })
  t.teardown(async () => await persistence.close())
  return persistence
}

/** A transaction of app 'app' that has inserted `userId` and stays open until `release` is called. */
async function heldTransaction (persistence: Persistence, userId = 'ada'): Promise<{ release: () => void, transaction: Promise<void> }> {
  let entered!: () => void
  const inside = new Promise<void>((resolve) => { entered = resolve })
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  const transaction = persistence.transactor.transaction(async (uow) => {
    await uow.users.insert(sampleUser({ appId: 'app', userId, klaimId: `k-${userId}`, email: `${userId}@example.com` }))
    entered()
    await gate
  })
  await inside
  return { release, transaction }
}

t.test('a database the service creates only its owner can read: folders 0700, the file and its -wal and -shm 0600; an existing file keeps its mode', async (t) => {
  const dir = folder(t)
  const mode = (path: string): string => (statSync(path).mode & 0o777).toString(8)
  const created = await openPersistence({ databaseUrl: `sqlite:${join(dir, 'a', 'b', 'users.db')}` })
  await created.apps.listApps()
  t.same([mode(join(dir, 'a')), mode(join(dir, 'a', 'b'))], ['700', '700'])
  t.same(['', '-wal', '-shm'].map((suffix) => mode(join(dir, 'a', 'b', `users.db${suffix}`))), ['600', '600', '600'])
  await created.close()
  writeFileSync(join(dir, 'shared.db'), '')
  chmodSync(join(dir, 'shared.db'), 0o640)
  const existing = await openPersistence({ databaseUrl: `sqlite:${join(dir, 'shared.db')}` })
  t.teardown(async () => await existing.close())
  t.equal(mode(join(dir, 'shared.db')), '640', 'the operator\'s choice')
  t.equal(mode(dir), '700', 'an existing folder is left as it is (mkdtemp makes it 0700)')
})

t.test('on an in-memory database a query outside a transaction waits for the connection; it never runs inside another\'s transaction', async (t) => {
  const persistence = await openPersistence({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await persistence.close())
  await persistence.apps.insertApp({ appId: 'app', name: 'app', createdAt: 1 })

  const { release, transaction } = await heldTransaction(persistence)

  // An in-memory database has one connection: run at once, this read would see the uncommitted insert.
  let answered = false
  const read = persistence.users.findByUserId('app', 'ada').finally(() => { answered = true })
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(answered, false, 'queued behind the open transaction')

  release()
  await transaction
  t.match(await read, { userId: 'ada' }, 'answered after the commit')
  t.match(await persistence.users.findByUserId('app', 'ada'), { userId: 'ada' }, 'and at once when the connection is free')
})

t.test('on a file database a read outside a transaction need not wait for one, and sees only what was committed', async (t) => {
  const persistence = await openFile(t)
  await persistence.apps.insertApp({ appId: 'app', name: 'app', createdAt: 1 })
  const bob = sampleUser({ appId: 'app', userId: 'bob', klaimId: 'k-bob', email: 'bob@example.com' })
  await persistence.users.insert(bob)

  const { release, transaction } = await heldTransaction(persistence)

  // Answered on the SQLite thread's connection while the transaction is still open.
  t.equal(await persistence.users.findByUserId('app', 'ada'), undefined, 'the uncommitted insert is not seen')
  // A write there meets the transaction's write lock if it runs before the commit, and then waits
  // for it the queued way (as for another process's lock: sqlite-availability.test.ts); it lands.
  const update = persistence.users.update({ ...bob, name: 'Bob', updatedAt: 2, version: 2 }, bob)
  release()
  await Promise.all([transaction, update])
  t.match(await persistence.users.findByUserId('app', 'ada'), { userId: 'ada' }, 'the committed one is')
  t.match(await persistence.users.findByUserId('app', 'bob'), { name: 'Bob', version: 2 }, 'and the write that waited for the lock landed')
})

t.test('an update finds its row through the (app_id, user_id) index that the read before it walked', async (t) => {
  const persistence = await openPersistence({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await persistence.close())
  await persistence.apps.insertApp({ appId: 'app', name: 'app', createdAt: 1 })
  const ada = sampleUser({ appId: 'app', userId: 'ada' })
  await persistence.users.insert(ada)
  await persistence.users.update({ ...ada, name: 'Ada', version: 2 }, ada)

  const updates = [...HOT_STATEMENTS].filter((sql) => sql.startsWith('update "users"'))
  t.ok(updates.length > 0)
  for (const sql of updates) {
    const parameters = Array.from(sql.matchAll(/\?/g), () => null)
    const plan = await persistence.db.executeQuery<{ detail: string }>(CompiledQuery.raw(`explain query plan ${sql}`, parameters))
    t.match(plan.rows.map((row) => row.detail).join('; '), /USING INDEX users_app_user_id_key \(app_id=\? AND user_id=\?\)/, sql)
  }
})

t.test('a transaction that SQLite rolled back by itself reports the error that ended it', async (t) => {
  const persistence = await openPersistence({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await persistence.close())
  await persistence.apps.insertApp({ appId: 'app', name: 'app', createdAt: 1 })
  // RAISE(ROLLBACK) ends the whole transaction, as some errors (a full disk, say) can.
  await sql`create temp trigger boom before insert on users when new.user_id = 'boom' begin select raise(rollback, 'boom'); end`.execute(persistence.db)

  await t.rejects(persistence.transactor.transaction(async ({ users }) => {
    await users.insert(sampleUser({ appId: 'app', userId: 'ada', klaimId: 'k1' }))
    await users.insert(sampleUser({ appId: 'app', userId: 'boom', klaimId: 'k2', email: 'boom@example.com' }))
  }), { message: 'boom' }, 'not "cannot rollback - no transaction is active"')
  t.equal(await persistence.users.findByUserId('app', 'ada'), undefined, 'nothing of it stays')
})

t.test('a statement whose parameters cannot cross to the SQLite thread fails, and the thread goes on', async (t) => {
  const persistence = await openFile(t)
  await persistence.apps.insertApp({ appId: 'app', name: 'app', createdAt: 1 })
  await persistence.users.insert(sampleUser({ appId: 'app', userId: 'ada' }))
  // Only a caller past the types can send one; the use cases check their input first.
  await t.rejects(persistence.users.findByUserId('app', (() => 'ada') as unknown as string), { name: 'DataCloneError' })
  t.match(await persistence.users.findByUserId('app', 'ada'), { userId: 'ada' })
})

/**
 * A file whose table `a` is made by `schema` on a connection of the event loop's thread (`other`),
 * and a SQLite thread on it keeping `cacheSize` statements. Both closed at the end of `t`.
 */
async function threadBeside (t: Test, schema: string, cacheSize: number, pragmas: string[] = []): Promise<{ other: BetterSqlite3.Database, thread: SqliteThread }> {
  const file = join(folder(t), 'thread.db')
  const other = new BetterSqlite3(file)
  t.teardown(() => other.close())
  other.pragma('journal_mode = WAL')
  other.exec(schema)
  const thread = await SqliteThread.open(file, pragmas, cacheSize, () => {})
  t.teardown(async () => await thread.close())
  return { other, thread }
}

t.test('the SQLite thread knows statements by number: past its cache it forgets them all and numbers again; one that failed to prepare is prepared at its next use', async (t) => {
  const { other, thread } = await threadBeside(t, "create table a (x integer, y text); insert into a values (1, 'one')", 2)

  // Three statements through a cache of two: each round numbers them again from 0. Their rows
  // are what the same statements give on a connection of the event loop's thread.
  const reads: Array<[string, unknown[]]> = [
    ['select x, y from a', []],
    ['select y as x, x as y from a where x = ?', [1]],
    ['select x + 1 as x, y as x from a', []] // a name twice
  ]
  for (let round = 0; round < 3; round++) {
    for (const [sql, parameters] of reads) t.same((await thread.run(sql, parameters)).rows, other.prepare(sql).all(parameters), `round ${round}: ${sql}`)
  }
  t.same(other.prepare(reads[2]?.[0] as string).all(), [{ x: 'one' }])
  t.same(await thread.run('insert into a values (?, ?)', [2, 'two']), { numAffectedRows: 1n, insertId: 2n, rows: [] })

  await t.rejects(thread.run('select z from b', []), { name: 'SqliteError', code: 'SQLITE_ERROR', message: 'no such table: b' })
  other.exec('create table b (z integer); insert into b values (7)')
  t.same((await thread.run('select z from b', [])).rows, [{ z: 7 }], 'prepared from the SQL it was sent first')

  // The SQL crosses once; then the number alone.
  const sent: unknown[] = []
  const postMessage = Worker.prototype.postMessage
  Worker.prototype.postMessage = function (this: Worker, message: unknown) {
    sent.push(message)
    postMessage.call(this, message)
  }
  try {
    for (let i = 0; i < 2; i++) await thread.run('select x from a where x = ?', [2])
  } finally {
    Worker.prototype.postMessage = postMessage
  }
  t.match(sent, [[Number, Number, [2], 'select x from a where x = ?'], [Number, Number, [2]]])
  t.equal((sent[1] as unknown[]).length, 3)
})

t.test('the SQLite thread makes a transaction\'s writes in one message: all or none, refused at the first that changes no row', async (t) => {
  const { other, thread } = await threadBeside(t, "create table a (x integer primary key, y text); insert into a values (1, 'one')", 3, ['busy_timeout = 0'])
  const rows = (): unknown[] => other.prepare('select x, y from a order by x').all()
  const insert = 'insert into a values (?, ?) returning x'
  const rename = 'update a set y = ? where x = ?'

  t.equal(await thread.transaction([[insert, [2, 'two']], [rename, ['uno', 1]]]), true, 'committed')
  t.same(rows(), [{ x: 1, y: 'uno' }, { x: 2, y: 'two' }])

  t.equal(await thread.transaction([[insert, [3, 'three']], [rename, ['nine', 9]], [rename, ['dos', 2]]]), false, 'refused: no row 9')
  t.same(rows(), [{ x: 1, y: 'uno' }, { x: 2, y: 'two' }], 'nothing written, the insert before it undone')

  await t.rejects(thread.transaction([[rename, ['eins', 1]], [insert, [2, 'again']]]), { code: 'SQLITE_CONSTRAINT_PRIMARYKEY' })
  t.same(rows(), [{ x: 1, y: 'uno' }, { x: 2, y: 'two' }], 'a failure undoes it all')

  other.exec('begin immediate')
  await t.rejects(thread.transaction([[rename, ['eins', 1]]]), { code: 'SQLITE_BUSY' }, 'another connection holds the write lock')
  other.exec('commit')

  // Numbered as single statements are: a statement first sent in a transaction, even one not
  // reached, is known by its number afterwards, and a cache overflow numbers them all again.
  t.equal(await thread.transaction([[rename, ['nine', 9]], ['delete from a where x = ?', [2]]]), false)
  t.same((await thread.run('delete from a where x = ?', [2])).numAffectedRows, 1n, 'the statement after the refused one was learned')
  const reads = ['select y from a where x = ?', 'select x from a where y = ?']
  for (const sql of reads) await thread.run(sql, [1])
  // The same new statement twice, another between: its SQL goes once.
  t.equal(await thread.transaction([[insert, [4, 'four']], ['update a set y = y || ? where x = ?', ['!', 4]], [insert, [5, 'five']]]), true, 'past the cache of three')
  t.same((await thread.run(reads[0] as string, [4])).rows, [{ y: 'four!' }])
  t.same(rows(), [{ x: 1, y: 'uno' }, { x: 4, y: 'four!' }, { x: 5, y: 'five' }])
})

/** The messages posted to any worker while `action` runs. */
async function messagesDuring (action: () => Promise<unknown>): Promise<unknown[][]> {
  const sent: unknown[][] = []
  const postMessage = Worker.prototype.postMessage
  Worker.prototype.postMessage = function (this: Worker, message: unknown) {
    if (Array.isArray(message)) sent.push(message)
    postMessage.call(this, message)
  }
  try {
    await action()
  } finally {
    Worker.prototype.postMessage = postMessage
  }
  return sent
}

t.test('a guarded transaction on a file database: its writes go to the SQLite thread in one message; anything amiss, and it runs again as an ordinary transaction', async (t) => {
  const persistence = await openFile(t)
  const { users } = persistence
  await persistence.apps.insertApp({ appId: 'app', name: 'app', createdAt: 1 })
  const ada = sampleUser({ appId: 'app', userId: 'ada' })
  await users.insert(ada)
  const cases = guardedCases(persistence, 'app')
  const { guarded, another, exists } = cases

  // Read, then two writes: held back, then sent in one message, as one transaction.
  let inserted: User | undefined
  const sent = await messagesDuring(async () => {
    const made = await cases.renameAndInsert()
    t.equal(made.runs, 1)
    inserted = made.inserted
  })
  t.match(sent.filter((message) => message[1] === -2), [[Number, -2, [[Number, Array], [Number, Array]]]], 'one message with both writes')
  t.match(await cases.ada(), { name: 'Ada', version: 2 })
  t.ok(await exists(inserted as User))

  // What it read changes before its writes are made: they are refused, all of them, and it runs
  // again in an ordinary transaction, which reads the new row.
  const stale = await cases.staleRead()
  t.equal(stale.runs, 2)
  t.match(await cases.ada(), { name: 'Ada 2', metadata: { by: 'another' }, version: 4 })
  t.notOk(await exists(stale.lost), 'the refused run\'s insert was undone')
  t.ok(await exists(stale.kept))

  // A query that is not a prepared one cannot be held: it fails there, and the ordinary
  // transaction runs it.
  let runs = 0
  t.equal(await guarded(async (uow) => {
    runs++
    return await uow.idempotency.purgeExpired(0)
  }), 0)
  t.equal(runs, 2)

  // The use case's own answer, from the first run; a failure, run again; nothing lands.
  await checkErrorAnswers(t, cases)

  // The event loop's connection holds the write lock: the thread cannot begin, and the ordinary
  // transaction waits for the lock.
  const { release, transaction } = await heldTransaction(persistence, 'eve')
  const onThread = SqliteThread.prototype.transaction
  // Released once the thread has tried (and, the lock being taken, failed) to begin.
  SqliteThread.prototype.transaction = async function (this: SqliteThread, writes) {
    return await onThread.call(this, writes).finally(release)
  }
  t.teardown(() => { SqliteThread.prototype.transaction = onThread })
  runs = 0
  const late = another()
  await guarded(async (uow) => {
    runs++
    await uow.users.insert(late)
  })
  await transaction
  t.equal(runs, 2)
  t.ok(await exists(late))
})

t.test('a host that never closes the service still exits, and one that awaits a statement is kept alive for it', async (t) => {
  const dir = folder(t)
  const notADatabase = join(dir, 'not-a-database.db')
  writeFileSync(notADatabase, 'plain text, not a SQLite database file, and long enough to hold its header\n'.repeat(8))
  const entry = pathToFileURL(resolve(import.meta.dirname, '..', '..', 'dist', 'index.js')).href
  // Top-level awaits: were the thread not holding the process open while a statement runs, Node
  // would exit at the first one with code 13 (an unsettled top-level await).
  const script = `
    import { openUsersService } from ${JSON.stringify(entry)}
    await openUsersService({ databaseUrl: ${JSON.stringify(`sqlite:${notADatabase}`)} }).catch((error) => console.log(error.code))
    const users = await openUsersService({ databaseUrl: ${JSON.stringify(`sqlite:${join(dir, 'users.db')}`)} })
    const { appId } = await users.createApp({ name: 'host' })
    console.log((await users.createUser({ appId, email: 'ada@example.com' })).email)
  `
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '--eval', script], { timeout: 30_000 })
  t.equal(stdout, 'SQLITE_NOTADB\nada@example.com\n', 'no close, yet the process ended by itself')
})

/** Runs `action` and returns the workers it sent messages to (the SQLite thread's, for statements). */
async function workersSentTo (action: () => Promise<unknown>): Promise<Worker[]> {
  const workers = new Set<Worker>()
  const postMessage = Worker.prototype.postMessage
  Worker.prototype.postMessage = function (this: Worker, ...args: Parameters<Worker['postMessage']>) {
    workers.add(this)
    postMessage.apply(this, args)
  }
  try {
    await action()
  } finally {
    Worker.prototype.postMessage = postMessage
  }
  return [...workers]
}

/** A fresh database file and its SQLite thread's worker; `stops` collects what onPoolError hears. */
/** A file database with its SQLite thread; `reports(n)` resolves once onPoolError has heard n reports in all. */
async function openWithThread (t: Test, dir = folder(t), restartIntervalMs?: number): Promise<{ persistence: Persistence, thread: Worker, stops: Error[], reports: (n: number) => Promise<void> }> {
  const stops: Error[] = []
  const waiting: Array<{ n: number, resolve: () => void }> = []
  const onPoolError = (error: Error): void => {
    stops.push(error)
    for (const w of waiting.filter((w) => stops.length >= w.n)) w.resolve()
  }
  const next = nextThread(t)
  const persistence = await openPersistence({ databaseUrl: `sqlite:${join(dir, 'users.db')}`, onPoolError, sqliteThreadRestartIntervalMs: restartIntervalMs })
  t.teardown(async () => await persistence.close())
  const reports = async (n: number): Promise<void> => {
    if (stops.length >= n) return
    const held = setInterval(() => {}, 1000)
    await new Promise<void>((resolve) => waiting.push({ n, resolve })).finally(() => clearInterval(held))
  }
  return { persistence, thread: await next, stops, reports }
}

/**
 * The worker of the next SQLite thread started, caught as the driver lets it go (it holds the
 * process only while busy). The process is held until then: a restart waits on a timer that does
 * not hold it, and here no server does.
 */
async function nextThread (t: Test): Promise<Worker> {
  const unref = Worker.prototype.unref
  const held = setInterval(() => {}, 1000)
  t.teardown(() => {
    Worker.prototype.unref = unref
    clearInterval(held)
  })
  return await new Promise<Worker>((resolve) => {
    Worker.prototype.unref = function (this: Worker) {
      Worker.prototype.unref = unref
      unref.apply(this)
      resolve(this)
    }
  }).finally(() => clearInterval(held))
}

t.test('when the SQLite thread stops, the statement under way fails as unavailable, and a new thread runs the next ones; one that keeps stopping is started once an interval at most', async (t) => {
  const { persistence, thread, stops } = await openWithThread(t, undefined, 2000)
  await persistence.apps.insertApp({ appId: 'app', name: 'app', createdAt: 1 })
  const ada = sampleUser({ appId: 'app', userId: 'ada' })
  await persistence.users.insert(ada)
  t.same(await workersSentTo(async () => await persistence.users.findByUserId('app', 'ada')), [thread], 'statements go to the thread')

  // Sent after the stop was asked for, so the thread never runs it.
  const firstStop = performance.now()
  const stopping = thread.terminate()
  const underWay = await persistence.users.findByUserId('app', 'ada').catch((error: unknown) => error)
  await stopping
  t.match(underWay, { code: 'SQLITE_THREAD_STOPPED', message: /^the SQLite thread stopped \(the SQLite thread exited with code 1\)$/ })
  t.ok(isUnavailable(underWay), 'a 503 over HTTP, not a 500')
  t.match(stops, [{ message: /^the SQLite thread stopped .*; a new one is started$/ }], 'reported once, to the pool listener')

  const sentTo = await workersSentTo(async () => {
    await persistence.users.update({ ...ada, name: 'Ada', updatedAt: 2, version: 2 }, ada)
    t.match(await persistence.users.findByUserId('app', 'ada'), { name: 'Ada', version: 2 }, 'reads and writes go on')
  })
  t.equal(sentTo.length, 1, 'on one thread')
  t.not(sentTo[0], thread, 'a new one')
  t.equal(stops.length, 1, 'which started without a complaint')

  // The new thread stops too, so soon after the restart that another would likely go the same
  // way: the next one starts only once the interval since the restart has passed.
  const third = nextThread(t)
  await sentTo[0]?.terminate()
  t.match(stops[1], { message: /^the SQLite thread stopped .*, within 2 s of the last restart; a new one is started within 2 s: statements run on the event loop's connection until then$/ })
  t.same(await workersSentTo(async () => {
    t.match(await persistence.users.findByUserId('app', 'ada'), { name: 'Ada' }, 'answered')
  }), [], 'meanwhile by the event loop\'s connection')
  const started = await third
  // Timers fire on whole milliseconds.
  t.ok(performance.now() - firstStop >= 1999, 'started 2 s after the restart at the earliest')
  t.same(await workersSentTo(async () => {
    t.match(await persistence.users.findByUserId('app', 'ada'), { name: 'Ada' })
  }), [started], 'then by the thread started after the interval')
  t.equal(stops.length, 2)
})

t.test('a SQLite thread that stops before answering anything is started again only after the interval; statements run on the other connection meanwhile', async (t) => {
  const { persistence, thread, stops } = await openWithThread(t, undefined, 1000)
  const next = nextThread(t)
  const stopped = performance.now()
  await thread.terminate()
  t.match(stops, [{ message: /^the SQLite thread stopped .*, before it answered any statement; a new one is started within 1 s: statements run on the event loop's connection until then$/ }])

  await persistence.apps.insertApp({ appId: 'app', name: 'app', createdAt: 1 })
  const sentTo = await workersSentTo(async () => {
    await persistence.users.insert(sampleUser({ appId: 'app', userId: 'ada' }))
    t.match(await persistence.users.findByUserId('app', 'ada'), { userId: 'ada' })
  })
  t.same(sentTo, [], 'no thread took them')
  const started = await next
  t.ok(performance.now() - stopped >= 999, 'started 1 s after the stop at the earliest')
  t.same(await workersSentTo(async () => await persistence.users.findByUserId('app', 'ada')), [started], 'then the new thread')
})

t.test('when a new SQLite thread cannot open the file, the event loop\'s connection runs the statements, and another start is tried after the interval', async (t) => {
  const dir = folder(t)
  const { persistence, thread, stops, reports } = await openWithThread(t, dir, 1000)
  await persistence.apps.insertApp({ appId: 'app', name: 'app', createdAt: 1 })
  await persistence.users.insert(sampleUser({ appId: 'app', userId: 'ada' }))
  // The open connection keeps the file; a new one finds no folder to open it in.
  rmSync(dir, { recursive: true, force: true })

  await thread.terminate()
  await reports(2)
  // The folder is back before the next attempt, but not the file: a thread never makes a
  // database of its own.
  mkdirSync(dir)
  const sentTo = await workersSentTo(async () => {
    t.match(await persistence.users.findByUserId('app', 'ada'), { userId: 'ada' }, 'answered all the same')
  })
  t.same(sentTo, [], 'by no thread')
  await reports(3)
  t.match(stops, [
    { message: /; a new one is started$/ },
    // better-sqlite3's own error, rebuilt from the thread's.
    { message: /^the SQLite thread could not be started again \(Cannot open database because the directory does not exist\); a new one is started within 1 s: statements run on the event loop's connection until then$/, cause: { name: 'TypeError' } },
    { message: /^the SQLite thread could not be started again \(unable to open database file\); a new one is started within 1 s/, cause: { code: 'SQLITE_CANTOPEN' } }
  ])
  t.notOk(existsSync(join(dir, 'users.db')), 'no new database file')
  t.match(await persistence.users.findByUserId('app', 'ada'), { userId: 'ada' })
})

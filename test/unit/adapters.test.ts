import { randomUUID } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { parseArgs, runCommand, type ParsedCommand } from '../../src/adapters/cli/cli.js'
import { sharedRateLimitStore } from '../../src/adapters/http/rate-limit-store.js'
import { DELETE_BATCH, deleteInBatches } from '../../src/adapters/persistence/batches.js'
import { parseDatabaseUrl, withoutPassword } from '../../src/adapters/persistence/database-url.js'
import { isRetryable, isUnavailable, uniqueViolation } from '../../src/adapters/persistence/database-errors.js'
import { openPersistence } from '../../src/adapters/persistence/open-persistence.js'
import { ConfigError, dataFolder, loadConfig } from '../../src/config.js'
import type { CreatedApp } from '../../src/application/apps.js'
import { ensureFirstApp, FIRST_KEY_FILE } from '../../src/first-start.js'
import { openUsersService, type UsersService } from '../../src/users-service.js'
import { SnapshotEnded } from '../../src/adapters/persistence/exported.js'

t.test('configuration: defaults, and one clear error per bad setting', async (t) => {
  t.match(loadConfig({}), { port: 3000, host: '127.0.0.1', databaseUrl: 'sqlite:./data/users.db', logLevel: 'info', rateLimitPerMinute: 6000, poolMax: 10, postgresPipeline: true, sqliteSynchronous: 'NORMAL' })
  t.equal(loadConfig({ DATABASE_PIPELINE: 'OFF' }).postgresPipeline, false)
  t.equal(loadConfig({}).rateLimitStore, 'memory', 'rate limits count in memory unless told')
  t.equal(loadConfig({ RATE_LIMIT_STORE: 'Database' }).rateLimitStore, 'database')
  t.throws(() => loadConfig({ RATE_LIMIT_STORE: 'redis' }), { message: 'RATE_LIMIT_STORE is invalid ("redis"): memory or database' })
  t.throws(() => loadConfig({ DATABASE_PIPELINE: 'no' }), { message: 'DATABASE_PIPELINE is invalid ("no"): on or off' })
  t.match(loadConfig({ PORT: '8080', HOST: '0.0.0.0', DATABASE_URL: 'postgresql://u@db/x', SQLITE_SYNCHRONOUS: 'full', RATE_LIMIT_PER_MINUTE: '0' }), { port: 8080, host: '0.0.0.0', sqliteSynchronous: 'FULL', rateLimitPerMinute: 0 })
  for (const env of [{ PORT: '70000' }, { PORT: '-1' }, { PORT: '1.5' }, { DATABASE_URL: 'sqlite:' }, { DATABASE_URL: 'postgres://' }, { SQLITE_SYNCHRONOUS: 'OFF' }, { DATABASE_POOL_MAX: '0' }, { LOG_LEVEL: 'verbose' }, { METRICS: 'maybe' }]) {
    t.throws(() => loadConfig(env), ConfigError, JSON.stringify(env))
  }
  t.throws(() => loadConfig({ PORT: 'eighty' }), { message: 'PORT is invalid ("eighty"): listening port' })
  t.throws(() => loadConfig({ DATABASE_URL: 'mysql://klaim:secret@db/users' }), {
    message: 'DATABASE_URL is invalid ("mysql://klaim:***@db/users"): sqlite:<path>, sqlite::memory:, postgres://... or postgresql://...'
  }, 'its password not shown')
  t.equal(loadConfig({ METRICS: 'OFF' }).metrics, false)
  t.same(loadConfig({ METRICS_TOKEN: 't' }).metrics, { token: 't' })
  t.same(loadConfig({}).metrics, {})
  t.same(loadConfig({}).trustProxy, [], 'no proxy is trusted unless named')
  t.same(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 127.0.0.1,::1, fd00::/8,loopback' }).trustProxy, ['10.0.0.0/8', '127.0.0.1', '::1', 'fd00::/8', 'loopback'])
  for (const bad of ['nope', '10.0.0.0/33', '::1/129', '10.0.0.0/', '10.0.0.0/8/1', '1.2.3', 'true', '1', '10.0.0.1,,10.0.0.2']) {
    t.throws(() => loadConfig({ TRUST_PROXY: bad }), { message: `TRUST_PROXY is invalid (${JSON.stringify(bad)}): comma-separated addresses or CIDR ranges of trusted proxies, or loopback, linklocal, uniquelocal` }, bad)
  }
  t.equal(dataFolder({ dialect: 'sqlite', filename: '/var/lib/klaim/users.db' }), '/var/lib/klaim')
  t.equal(dataFolder({ dialect: 'sqlite', filename: ':memory:' }), `${process.cwd()}/data`)
  t.equal(dataFolder({ dialect: 'postgres', connectionString: 'postgres://x/y' }), `${process.cwd()}/data`)
})

t.test('in-process database options are checked when the database opens', async (t) => {
  for (const bad of [{ poolMax: 0 }, { poolMax: 1.5 }, { lockTimeoutMs: -1 }, { lockTimeoutMs: Number.NaN }, { postgresStatementTimeoutMs: -1 }, { lockTimeoutMs: '5000' }, { postgresPipeline: 'false' }, { sqliteThreadRestartIntervalMs: 999 }]) {
    await t.rejects(openPersistence({ databaseUrl: 'sqlite::memory:', ...bad } as never), TypeError, JSON.stringify(bad))
  }
  const zero = await openPersistence({ databaseUrl: 'sqlite::memory:', lockTimeoutMs: 0, postgresStatementTimeoutMs: 0 })
  t.teardown(async () => await zero.close())
  t.pass('0 is no limit')
})

t.test('database URLs', async (t) => {
  t.same(parseDatabaseUrl('sqlite::memory:'), { dialect: 'sqlite', filename: ':memory:' })
  t.same(parseDatabaseUrl('sqlite:rel/users.db'), { dialect: 'sqlite', filename: 'rel/users.db' })
  t.same(parseDatabaseUrl('postgres://u:p@localhost:5432/db'), { dialect: 'postgres', connectionString: 'postgres://u:p@localhost:5432/db' })
  t.same(parseDatabaseUrl('postgresql:///db?host=/tmp/sock'), { dialect: 'postgres', connectionString: 'postgresql:///db?host=/tmp/sock' })
  for (const bad of ['', 'mysql://x', 'postgres://', 'postgres://[bad', 'sqlite:']) t.equal(parseDatabaseUrl(bad), undefined, bad)
  // As printed: a password never, whatever the rest.
  t.equal(withoutPassword('postgres://klaim:secret@db:5432/users'), 'postgres://klaim:***@db:5432/users')
  t.equal(withoutPassword('mysql://klaim:p@ss:w@db/users'), 'mysql://klaim:***@db/users', 'an @ in the password too')
  t.equal(withoutPassword('postgres://:secret@db/users'), 'postgres://:***@db/users')
  t.equal(withoutPassword('postgres://klaim@db/users?password=secret&sslmode=require'), 'postgres://klaim@db/users?password=***&sslmode=require', 'a password in the query, as node-postgres takes it')
  t.equal(withoutPassword('postgres://k:s@db/users?sslmode=require&SSLPassword=key-secret'), 'postgres://k:***@db/users?sslmode=require&SSLPassword=***')
  for (const plain of ['postgres://klaim@db/users', 'postgres://db/users?user=a:b@c', 'sqlite:./data/users.db', 'eighty']) t.equal(withoutPassword(plain), plain)
  await t.rejects(openUsersService({ databaseUrl: 'nope' }), TypeError)
})

t.test('driver errors are classified once, for both drivers', async (t) => {
  t.equal(uniqueViolation({ code: '23505', constraint: 'users_app_email_key' }), 'email')
  t.equal(uniqueViolation({ code: '23505', constraint: 'users_app_user_id_key' }), 'user_id')
  t.equal(uniqueViolation({ code: '23505', constraint: 'users_pkey' }), 'klaim_id')
  t.equal(uniqueViolation({ code: '23505', constraint: 'api_keys_key_hash_key' }), undefined)
  t.equal(uniqueViolation({ code: 'SQLITE_CONSTRAINT_UNIQUE', message: 'UNIQUE constraint failed: users.app_id, users.email_key' }), 'email')
  t.equal(uniqueViolation({ code: 'SQLITE_CONSTRAINT_PRIMARYKEY', message: 'UNIQUE constraint failed: users.klaim_id' }), 'klaim_id')
  t.equal(uniqueViolation(new Error('x')), undefined)
  t.equal(uniqueViolation(null), undefined)
  t.ok(isRetryable({ code: '40001' }))
  t.ok(isRetryable({ code: '40P01' }))
  t.ok(isRetryable({ code: 'SQLITE_BUSY' }))
  t.ok(isRetryable({ code: 'SQLITE_BUSY_SNAPSHOT' }), 'an extended busy code too')
  t.notOk(isRetryable({ code: 'SQLITE_LOCK_TIMEOUT' }), 'a lock already waited for in vain is not waited for again')
  t.notOk(isRetryable({ code: '23505' }))
  t.notOk(isRetryable(null))
  t.ok(isUnavailable({ code: 'ECONNREFUSED' }))
  t.ok(isUnavailable({ code: '57P01' }))
  t.ok(isUnavailable({ code: '55P03' }), 'a lock wait past lock_timeout')
  t.ok(isUnavailable({ code: 'SQLITE_LOCK_TIMEOUT' }), 'the same on SQLite')
  t.ok(isUnavailable({ code: '53100' }), 'a full disk')
  t.ok(isUnavailable({ code: 'SQLITE_FULL' }), 'the same on SQLite')
  t.ok(isUnavailable(new Error('Connection terminated unexpectedly')))
  t.ok(isUnavailable(new Error('Client was closed and is not queryable')), 'a client ended after its session was')
  t.ok(isUnavailable(new Error('Query read timeout')), 'no answer in time: the network or the server is gone')
  t.notOk(isUnavailable(new Error('syntax error')))
  t.notOk(isUnavailable('x'))
})

t.test('deletes in batches until one comes back short, pausing after each full one as long as it took', async (t) => {
  const sizes = [DELETE_BATCH, DELETE_BATCH, 7]
  const spans: Array<{ start: number, end: number }> = []
  const deleted = await deleteInBatches(async () => {
    // A batch that keeps the thread 5 ms, as a synchronous SQLite DELETE does.
    const start = performance.now()
    while (performance.now() - start < 5);
    spans.push({ start, end: performance.now() })
    return { numDeletedRows: BigInt(sizes[spans.length - 1] ?? 0) }
  })
  t.equal(deleted, 2 * DELETE_BATCH + 7)
  t.equal(spans.length, 3)
  for (let i = 1; i < spans.length; i++) {
    const pause = (spans[i]?.start ?? 0) - (spans[i - 1]?.end ?? 0)
    t.ok(pause >= 4, `a pause of about the batch's 5 ms before batch ${i + 1} (${pause.toFixed(1)} ms)`)
  }
})

t.test('cli verbs in process: friendly text, --json, help and usage errors', async (t) => {
  const service = await openUsersService({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await service.close())
  const out: string[] = []
  const err: string[] = []
  let drains = 0
  const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l), drain: async () => { drains++ } }
  const cli = async (...argv: string[]) => {
    out.length = 0
    err.length = 0
    const parsed = parseArgs(argv, io)
    return parsed === undefined ? 0 : await runCommand(parsed, { databaseUrl: 'sqlite::memory:', openService: async () => service }, io)
  }
  t.equal(await cli('apps', 'list'), 0)
  t.match(out[0], /No apps\. Create one/)
  t.equal(await cli('apps', 'list', '--json'), 0)
  t.same(JSON.parse(out[0] ?? ''), [])
  t.equal(await cli('apps', 'create', '   '), 1)
  t.same([out, err], [[], ['The request is invalid. /name must be a string of 1 to 200 characters']], 'a field refused: the message and each field, one line')
  await cli('apps', 'create', 'shop')
  const { app_id: appId } = JSON.parse(out[0] ?? '')
  t.equal(await cli('apps', 'list', '--json'), 0)
  t.equal(JSON.parse(out[0] ?? '')[0].name, 'shop')
  t.equal(await cli('keys', 'create', appId), 0)
  t.match(out[1], /^klaim_sk_/)
  t.equal(await cli('keys', 'list', 'app_none'), 1, 'a mistyped app id is not an app without keys')
  t.equal(err[0], 'No app app_none. See the apps: apps list')
  t.equal(await cli('keys', 'list', appId), 0)
  t.equal(out.length, 2)
  const keyId = out[0]?.split(' ')[0] ?? ''
  t.equal(await cli('keys', 'revoke', keyId, '--json'), 0)
  t.same(JSON.parse(out[0] ?? ''), { key_id: keyId, revoked: true })
  t.equal(await cli('keys', 'revoke', 'key_none'), 1)
  t.match(err[0], /No key/)
  t.equal(await cli('keys', 'create', 'app_none'), 1)
  t.equal(err[0], 'No app app_none. See the apps: apps list')
  t.equal(await cli('migrate', '--json'), 0)
  t.same(JSON.parse(out[0] ?? ''), { applied: [] })
  await service.createUser({ appId, email: 'a@example.com', userId: 'a' })
  t.equal(await cli('users', 'get', appId, 'a', '--json'), 0)
  t.equal(JSON.parse(out[0] ?? '').userId, 'a')
  t.equal(await cli('users', 'get', appId, 'a'), 0)
  t.match(out[0], /"email": "a@example.com"/)
  const { klaimId } = await service.createUser({ appId, email: 'b@example.com', userId: 'b' })
  t.equal(await cli('users', 'delete', appId, 'a'), 0)
  t.match(out[0], /^Deleted user a \(klaim_id \d+_\w+\) of app_[\w-]+, and 0 stored responses\.$/)
  t.equal(await cli('users', 'delete', appId, 'b', '--json'), 0)
  t.same(JSON.parse(out[0] ?? ''), { app_id: appId, user_id: 'b', klaim_id: klaimId, stored_responses: 0, deleted: true })
  t.equal(await cli('users', 'delete', appId, 'a'), 1, 'a missing user fails')
  t.equal(err[0], `No user a in app ${appId}.`)
  t.equal(await cli('users', 'get', appId, 'b'), 1)
  t.equal(err[0], `No user b in app ${appId}.`)
  for (const verb of ['get', 'delete']) {
    t.equal(await cli('users', verb, 'app_none', 'a'), 1)
    t.equal(err[0], 'No app app_none. See the apps: apps list', `users ${verb}: the app is what is missing`)
  }
  for (const userId of ['b', 'a']) await service.createUser({ appId, email: `${userId}@example.com`, userId })
  t.equal(await cli('users', 'export', appId), 0)
  t.same(out.map((line) => JSON.parse(line).userId), ['a', 'b'], 'one JSON line a user')
  t.equal(drains, 2, 'waiting for the output to take each line')
  t.equal(await cli('users', 'export', 'app_none'), 1)
  t.equal(err[0], 'No app app_none. See the apps: apps list')
  const stalled = { exportUsers: async function * () { yield { userId: 'a' }; throw new SnapshotEnded('the read snapshot has ended') } }
  t.equal(await runCommand(parseArgs(['users', 'export', appId], io) as ParsedCommand, { databaseUrl: 'sqlite::memory:', openService: async () => stalled as unknown as UsersService }, io), 1)
  t.equal(err.at(-1), 'Export stopped: nothing was read from it for 10 minutes, so its snapshot ended (export into a file, or to a reader that keeps reading).', 'a reader that stopped reading: one line')
  await service.createUser({ appId, email: 'c@example.com', userId: 'c' })
  const dir = mkdtempSync(join(tmpdir(), 'klaim-copy-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const target = `sqlite:${join(dir, 'users.db')}`
  const serving = await service.announceServer()
  t.equal(await cli('copy', target), 1, 'not while a server runs on the database')
  t.equal(err[0]?.replace(/seen \d+ s ago/, 'seen N s ago'), `Nothing copied: a server is running on the source database (${hostname()} pid ${process.pid}, seen N s ago): stop it first.`)
  await serving.stop()
  t.equal(await cli('copy', target), 0)
  t.equal(out[0], `Copied 1 app, 2 keys, 3 users and 0 stored responses to ${target}.`)
  t.equal(await cli('copy', target, '--json'), 1, 'not into a database with apps')
  t.equal(err[0], 'Nothing copied: the target database has apps already: copy into an empty one.')
  t.equal(await cli('copy', 'sqlite::memory:'), 1)
  t.equal(err[0], 'Nothing copied: an in-memory database would end with the copy: copy into a file or PostgreSQL.')
  t.equal(await cli('copy', 'mysql://klaim:secret@db/users'), 1)
  t.equal(err[0], 'Not a database URL: mysql://klaim:***@db/users (sqlite:<path>, postgres://...)', 'its password not shown')
  t.equal(await cli('copy', `sqlite:${join(dir, 'other.db')}`, '--json'), 0)
  t.same(JSON.parse(out[0] ?? ''), { target: `sqlite:${join(dir, 'other.db')}`, apps: 1, keys: 2, users: 3, stored_responses: 0 })
  const kept = await service.createApp({ name: 'kept' })
  t.equal(await cli('apps', 'delete', appId), 0)
  t.same(out, [`Deleted app ${appId} (shop): 3 users, 2 keys, 0 stored responses.`], 'another app is left')
  t.equal(await cli('apps', 'delete', kept.appId), 0)
  t.same(out, [`Deleted app ${kept.appId} (kept): 0 users, 1 key, 0 stored responses.`, 'That was the last app: every request is refused until one is created (apps create <name>).'])
  t.equal(await cli('apps', 'delete', appId), 1, 'an app deleted already is no app')
  t.equal(err[0], `No app ${appId}. See the apps: apps list`)
  const other = await service.createApp({ name: 'other' })
  t.equal(await cli('apps', 'delete', other.appId, '--json'), 0)
  t.same(JSON.parse(out[0] ?? ''), { app_id: other.appId, name: 'other', users: 0, keys: 1, stored_responses: 0, deleted: true })
  t.equal(await cli('apps', 'list'), 0)
  t.match(out[0], /No apps\. Create one/)
  t.equal(await cli(), 0)
  t.match(out[0], /Verbs:/)
  t.equal(await cli('--help'), 0)
  t.equal(await cli('apps', 'create', '--help'), 0)
  t.match(out[0], /apps create <name>/)
  const misuse = (argv: string[]) => { try { parseArgs(argv, io) } catch (error) { return error } }
  t.match(misuse(['nope']), { exitCode: 2, message: /Unknown command/ })
  t.match(misuse(['users', 'get', 'x']), { exitCode: 2, message: /Usage/ })
})

t.test('a start after the last app was deleted creates no app, writes no key file, and reports that none is left', async (t) => {
  const service = await openUsersService({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await service.close())
  const folder = mkdtempSync(join(tmpdir(), 'klaim-first-'))
  t.teardown(() => rmSync(folder, { recursive: true, force: true }))
  const first = await ensureFirstApp(service, folder)
  t.same(first, { keyFile: join(folder, FIRST_KEY_FILE), noApp: false })
  rmSync(join(folder, FIRST_KEY_FILE))
  const [app] = await service.listApps()
  await service.deleteApp({ appId: app?.appId ?? '' })
  t.same(await ensureFirstApp(service, folder), { noApp: true })
  t.same(await service.listApps(), [])
  t.notOk(existsSync(join(folder, FIRST_KEY_FILE)))
  await service.createApp({ name: 'made' })
  t.same(await ensureFirstApp(service, folder), { noApp: false }, 'until an app is made')
})

t.test('a first start that cannot write the key file creates no app', async (t) => {
  const service = await openUsersService({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await service.close())
  const dir = mkdtempSync(join(tmpdir(), 'klaim-first-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'taken'), '')
  await t.rejects(ensureFirstApp(service, join(dir, 'taken')), { message: /^cannot write the first app's API key, so none was created \(.*(EEXIST|ENOTDIR)/ })
  t.same(await service.listApps(), [], 'no app whose only key would be lost')
  const folder = join(dir, 'data')
  const { keyFile } = await ensureFirstApp(service, folder)
  t.same(readdirSync(folder), [FIRST_KEY_FILE], 'once it can, the key file and nothing else')
  t.ok(await service.authenticate(readFileSync(keyFile ?? '', 'utf8').trim()), 'holding the key')
  t.equal(statSync(folder).mode & 0o777, 0o700)
  t.equal(statSync(keyFile ?? '').mode & 0o777, 0o600)
})

t.test('the first app\'s key is kept by the call that creates the app, before its commit: a key that cannot be kept creates no app', async (t) => {
  const service = await openUsersService({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await service.close())
  await t.rejects(service.createFirstApp(() => { throw new Error('disk full') }), { message: 'disk full' })
  t.same(await service.listApps(), [], 'nothing created')
  let kept = ''
  const app = await service.createFirstApp(({ apiKey }) => { kept = apiKey })
  t.equal(kept, app?.apiKey)
  t.ok(await service.authenticate(kept), 'the kept key is the app\'s')
  t.equal(await service.createFirstApp(() => { t.fail('not kept by a call that creates nothing') }), undefined)
})

t.test('a first start moves the key into place before the app is committed, and leaves no other file', async (t) => {
  const folder = mkdtempSync(join(tmpdir(), 'klaim-first-'))
  t.teardown(() => rmSync(folder, { recursive: true, force: true }))
  const keyFile = join(folder, FIRST_KEY_FILE)
  // Stands in for the service: when this start creates the app, hands its key to `keep` before
  // the "commit", which `commit` then makes or fails; `stored` says what a later lookup of the
  // key finds (a commit whose answer was lost may have taken effect).
  const starting = (creates: boolean, commit: (created: CreatedApp) => CreatedApp = (created) => created,
    stored: (apiKey: string) => Promise<boolean> = async () => false): Pick<UsersService, 'listApps' | 'createFirstApp' | 'authenticate'> => ({
    listApps: async () => [],
    createFirstApp: async (keep) => {
      const created = { appId: 'app_1', name: 'default', apiKey: `klaim_${randomUUID()}` }
      if (!creates) return undefined
      await keep?.(created)
      return commit(created)
    },
    authenticate: async (apiKey) => await stored(apiKey) ? { appId: 'app_1', keyId: 'key_1' } : undefined
  })

  let key = ''
  t.same(await ensureFirstApp(starting(true, (created) => {
    t.same(readdirSync(folder), [FIRST_KEY_FILE], 'in place before the commit, and nothing else')
    t.equal(readFileSync(keyFile, 'utf8'), `${created.apiKey}\n`)
    key = created.apiKey
    return created
  }), folder), { keyFile, noApp: false })
  t.equal(readFileSync(keyFile, 'utf8'), `${key}\n`)
  t.equal(statSync(keyFile).mode & 0o777, 0o600)
  rmSync(keyFile)

  t.same(await ensureFirstApp(starting(false), folder), { noApp: true }, 'another start made it, or it was deleted')
  t.same(readdirSync(folder), [], 'its unused file removed')

  await t.rejects(ensureFirstApp(starting(true, (created) => { key = created.apiKey; throw new Error('commit failed') }), folder), { message: 'commit failed' })
  t.same(readdirSync(folder), [FIRST_KEY_FILE], 'a commit that failed leaves the file, which the next first start replaces…')
  t.same(await ensureFirstApp(starting(true), folder), { keyFile, noApp: false })
  t.not(readFileSync(keyFile, 'utf8'), `${key}\n`, '…with the key of the app it creates')

  const lost = (): CreatedApp => { throw new Error('Connection terminated unexpectedly') }
  t.same(await ensureFirstApp(starting(true, lost, async (apiKey) => apiKey === readFileSync(keyFile, 'utf8').trim()), folder),
    { keyFile, noApp: false }, 'a commit that took effect, though its answer was lost, created the app')
  await t.rejects(ensureFirstApp(starting(true, lost, async () => { throw new Error('connect ECONNREFUSED') }), folder),
    { message: 'Connection terminated unexpectedly' }, 'a lookup that cannot tell fails the start with the commit\'s error')
  await t.rejects(ensureFirstApp(starting(true, lost), folder), { message: 'Connection terminated unexpectedly' }, 'as does a commit that did not take effect')
  t.same(readdirSync(folder), [FIRST_KEY_FILE])
})

t.test('a first start finding a directory where its key file goes creates no app', async (t) => {
  const service = await openUsersService({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await service.close())
  const folder = mkdtempSync(join(tmpdir(), 'klaim-first-'))
  t.teardown(() => rmSync(folder, { recursive: true, force: true }))
  mkdirSync(join(folder, FIRST_KEY_FILE))
  await t.rejects(ensureFirstApp(service, folder), { message: /^cannot write the first app's API key, so none was created \(EISDIR/ })
  t.same(await service.listApps(), [])
  t.same(readdirSync(folder), [FIRST_KEY_FILE], 'nothing left behind')
  t.ok(statSync(join(folder, FIRST_KEY_FILE)).isDirectory(), 'and the directory untouched')
})

t.test('shared rate-limit store: windows fixed on the clock, the time left in them, one purge per new window', async (t) => {
  const hits: Array<[string, number]> = []
  const purges: number[] = []
  let ahead = 0
  let purgeFails = false
  const counter = {
    hit: async (bucket: string, windowStart: number) => { hits.push([bucket, windowStart]); return { windowStart: windowStart + ahead, hits: hits.length } },
    purge: async (before: number) => { purges.push(before); if (purgeFails) throw new Error('down'); return 0 }
  }
  let now = 125_000
  const store = new (sharedRateLimitStore(counter, () => now))({})
  const incr = async (key: string) => await new Promise((resolve, reject) => { store.incr(key, (error, result) => { if (error !== null) reject(error); else resolve(result) }, 60_000, 3) })
  t.same(await incr('key:a'), { current: 1, ttl: 55_000 }, 'the window that holds now, and what is left of it')
  t.same(hits, [['key:a', 120_000]])
  t.same(purges, [60_000], 'the first count in a window purges the buckets counted before the window before it')
  now = 130_000
  t.same(await incr('key:a'), { current: 2, ttl: 50_000 })
  t.same(purges, [60_000], 'once a window')
  ahead = 60_000
  t.same(await incr('key:a'), { current: 3, ttl: 60_000 }, 'a later window (another clock ahead): at most a window left')
  ahead = -60_000
  t.same(await incr('key:a'), { current: 4, ttl: 0 }, 'an earlier one: none left')
  ahead = 0
  now = 180_000
  purgeFails = true
  await incr('key:a')
  await new Promise((resolve) => setImmediate(resolve))
  now = 181_000
  purgeFails = false
  await incr('key:a')
  t.same(purges, [60_000, 120_000], 'a purge that failed is not run again in its window…')
  now = 240_000
  await incr('key:a')
  t.same(purges, [60_000, 120_000, 180_000], '…the next window\'s deletes what it left')
  t.equal(store.child({} as never), store, 'every route counts in the same buckets')
  const failing = new (sharedRateLimitStore({ hit: async () => { throw new Error('down') }, purge: async () => 0 }, () => now))({})
  await t.rejects(new Promise((resolve, reject) => { failing.incr('k', (error, result) => { if (error !== null) reject(error); else resolve(result) }, 60_000, 3) }), { message: 'down' }, 'a count that fails fails the request')
})

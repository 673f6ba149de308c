import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { connect, createServer, type AddressInfo } from 'node:net'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'
import Database from 'better-sqlite3'
import t, { type Test } from 'tap'
import { seed } from '../scripts/bench-seed.mjs'

// The compiled server and CLI as an operator runs them (`npm test` builds first).
const ROOT = resolve(import.meta.dirname, '..')
const SERVER = join(ROOT, 'dist', 'main.js')
const CLI = join(ROOT, 'dist', 'adapters', 'cli', 'main.js')
const run = promisify(execFile)

function tempDir (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'klaim-proc-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/**
 * The compiled server on the default database under `dir`, once it listens; its log lines so far,
 * and `logged(pattern)`, which waits for a line that matches.
 */
async function startServer (dir: string): Promise<{ server: ChildProcess, address: string, logs: string[], logged: (pattern: RegExp) => Promise<void> }> {
  const server = spawn(process.execPath, [SERVER], { cwd: dir, env: { ...process.env, PORT: '0', LOG_LEVEL: 'info', DATABASE_URL: '' }, stdio: ['ignore', 'pipe', 'pipe'] })
  const logs: string[] = []
  const lines = createInterface({ input: server.stdout })
  const logged = async (pattern: RegExp): Promise<void> => {
    if (logs.some((line) => pattern.test(line))) return
    await new Promise<void>((resolve) => lines.on('line', (line) => { if (pattern.test(line)) resolve() }))
  }
  const address = await new Promise<string>((resolve, reject) => {
    server.once('exit', (code) => reject(new Error(`server exited ${code}`)))
    lines.on('line', (line) => {
      logs.push(line)
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line)
      if (match?.[1] !== undefined) resolve(match[1])
    })
  })
  return { server, address, logs, logged }
}

/**
 * A PUT of `body` to /users/ada under way on a keep-alive connection: its `100 Continue` has come,
 * so the server holds the request, but not its body, which `send` sends. `closed` is all the
 * client received once the server closed the connection (the client never closes it).
 */
async function putUnderWay (address: string, key: string, body: string): Promise<{ send: () => void, closed: Promise<string> }> {
  const socket = connect(Number(new URL(address).port), '127.0.0.1')
  let received = ''
  const closed = new Promise<string>((resolve) => socket.on('close', () => resolve(received)))
  await new Promise<void>((resolve, reject) => {
    socket.on('error', reject)
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('utf8')
      if (received.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) resolve()
    })
    socket.write(`PUT /users/ada HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`)
  })
  return { send: () => socket.write(body), closed }
}

/** The server of a first start under `dir`, with the user `ada` made through its first key. */
async function withAda (dir: string): Promise<Awaited<ReturnType<typeof startServer>> & { key: string }> {
  const started = await startServer(dir)
  const key = readFileSync(join(dir, 'data', 'first-api-key.txt'), 'utf8').trim()
  const res = await fetch(`${started.address}/users`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ email: 'ada@example.com', user_id: 'ada', name: 'Ada' }) })
  if (res.status !== 201) throw new Error(`create: ${res.status}`)
  return { ...started, key }
}

t.test('SIGTERM finishes a request in flight on a keep-alive connection, closes it, and exits 0 at once', async (t) => {
  const { server, address, key, logged } = await withAda(tempDir(t))
  const under = await putUnderWay(address, key, '{"name": "Eve"}')
  const exit = new Promise<number | null>((resolve) => server.once('exit', resolve))
  server.kill('SIGTERM')
  await logged(/stopping: finishing requests in flight/)
  under.send()
  t.match(await under.closed, /\r\n\r\nHTTP\/1\.1 200 OK\r\n[^]*"name":"Eve"/, 'answered, then the connection closed by the server')
  // Not after the 72 s keep-alive timeout of the connection it answered on: the test would time out.
  t.equal(await exit, 0)
})

t.test('a second signal while requests finish stops the server at once, exit 1, with a line that says so', async (t) => {
  const dir = tempDir(t)
  const { server, address, key, logs, logged } = await withAda(dir)
  const under = await putUnderWay(address, key, '{"name": "Eve"}')
  const exit = new Promise<number | null>((resolve) => server.once('exit', resolve))
  server.kill('SIGTERM')
  await logged(/stopping: finishing requests in flight/)
  server.kill('SIGINT')
  t.equal(await exit, 1)
  t.notMatch(await under.closed, /200 OK/, 'the request in flight cut off')
  await logged(/stopping now/)
  t.ok(logs.some((line) => /"level":40.*"signal":"SIGINT".*stopping now, without finishing the requests in flight/.test(line)))
  const database = new Database(join(dir, 'data', 'users.db'), { readonly: true })
  t.teardown(() => database.close())
  t.same(database.prepare('select name from users').all(), [{ name: 'Ada' }], 'what was committed is kept')
})

t.test('first start: migrates, writes the key file (0600), logs only its path; SIGTERM exits 0', async (t) => {
  const dir = tempDir(t)
  const { server, address, logs } = await startServer(dir)
  const keyFile = join(dir, 'data', 'first-api-key.txt')
  const key = readFileSync(keyFile, 'utf8').trim()
  t.equal(statSync(keyFile).mode & 0o777, 0o600)
  t.same([statSync(join(dir, 'data')).mode & 0o777, statSync(join(dir, 'data', 'users.db')).mode & 0o777], [0o700, 0o600], 'the data folder and database are the owner\'s only')
  t.ok(logs.some((l) => l.includes(keyFile)))
  t.notOk(logs.some((l) => l.includes(key)), 'the key itself is never logged')
  const opened = logs.map((l) => JSON.parse(l)).find((l) => /^database opened/.test(l.msg))
  t.match(opened, { database: 'sqlite:./data/users.db', msg: 'database opened and migrated' }, 'which database, and that this start migrated it')
  t.equal(opened?.migrated[0], '0001-initial')
  const res = await fetch(`${address}/users`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ email: 'ada@example.com', user_id: 'ada' }) })
  t.equal(res.status, 201)
  const put = await fetch(`${address}/users/ada`, { method: 'PUT', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Ada' }) })
  t.equal(((await put.json()) as { name: string }).name, 'Ada')
  const database = new Database(join(dir, 'data', 'users.db'), { readonly: true })
  t.teardown(() => database.close())
  const running = database.prepare('select pid from servers')
  t.same(running.all(), [{ pid: server.pid }], 'marked as running in the database, which a copy refuses')
  const exit = new Promise<number | null>((resolve) => server.once('exit', resolve))
  server.kill('SIGTERM')
  t.equal(await exit, 0)
  t.same(running.all(), [], 'and no longer once stopped')

  // Its one app deleted, the next start creates none (a new key would reopen what was closed).
  rmSync(keyFile)
  const cli = async (...args: string[]) => await run(process.execPath, [CLI, ...args], { cwd: dir, env: { ...process.env, DATABASE_URL: '' } })
  const [app] = JSON.parse((await cli('apps', 'list', '--json')).stdout)
  await cli('apps', 'delete', app.app_id)
  const again = await startServer(dir)
  const stopped = new Promise<number | null>((resolve) => again.server.once('exit', resolve))
  again.server.kill('SIGTERM')
  t.equal(await stopped, 0)
  t.notOk(existsSync(keyFile), 'no key file')
  t.ok(again.logs.some((l) => /"level":40.*has no app.*apps create/.test(l)), 'a warning says how to make one')
  t.ok(again.logs.some((l) => /"migrated":\[\],"msg":"database opened, up to date"/.test(l)), 'a start that migrates nothing says so')
})

t.test('a bad setting stops the server with one clear line and a non-zero code', async (t) => {
  const dir = tempDir(t)
  for (const env of [{ DATABASE_URL: 'mysql://nope' }, { PORT: 'eighty' }, { LOG_LEVEL: 'loud' }]) {
    const result = await run(process.execPath, [SERVER], { cwd: dir, env: { ...process.env, ...env } }).catch((e: { code: number, stderr: string }) => e)
    t.equal((result as { code: number }).code, 1, JSON.stringify(env))
    t.match((result as { stderr: string }).stderr, /^klaim-users: .+\n$/)
  }
})

t.test('a database it cannot open stops the server with one clear line and a non-zero code', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'a-file'), '')
  const cases = { 'postgres://klaim@127.0.0.1:1/none': /ECONNREFUSED/, [`sqlite:${join(dir, 'a-file', 'users.db')}`]: /EEXIST|ENOTDIR/ }
  for (const [url, reason] of Object.entries(cases)) {
    const result = await run(process.execPath, [SERVER], { cwd: dir, env: { ...process.env, DATABASE_URL: url } }).catch((e: { code: number, stderr: string }) => e)
    t.equal((result as { code: number }).code, 1, url)
    t.match((result as { stderr: string }).stderr, /^klaim-users: cannot open the database \(.+\)\n$/)
    t.match((result as { stderr: string }).stderr, reason)
  }
})

t.test('a port in use stops the server with one clear line, a non-zero code, and no mark left in the database', async (t) => {
  const dir = tempDir(t)
  const taken = createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { taken.close() })
  const { port } = taken.address() as AddressInfo
  const result = await run(process.execPath, [SERVER], { cwd: dir, env: { ...process.env, PORT: String(port), DATABASE_URL: '' } }).catch((e: { code: number, stderr: string }) => e)
  t.equal((result as { code: number }).code, 1)
  t.match((result as { stderr: string }).stderr, /^klaim-users: cannot listen \(.*EADDRINUSE.*\)\n$/)
  const database = new Database(join(dir, 'data', 'users.db'), { readonly: true })
  t.teardown(() => database.close())
  t.same(database.prepare('select pid from servers').all(), [], 'so a copy can run at once')
})

t.test('a first start that cannot write the key file stops with one clear line and a non-zero code', async (t) => {
  const dir = tempDir(t)
  // In memory, the key file goes to ./data: here a file, not a folder.
  writeFileSync(join(dir, 'data'), '')
  const result = await run(process.execPath, [SERVER], { cwd: dir, env: { ...process.env, PORT: '0', DATABASE_URL: 'sqlite::memory:' } }).catch((e: { code: number, stderr: string }) => e)
  t.equal((result as { code: number }).code, 1)
  t.match((result as { stderr: string }).stderr, /^klaim-users: cannot write the first app's API key, so none was created \(.*(EEXIST|ENOTDIR).*\)\n$/)
})

t.test('cli: apps create prints exactly one JSON line; the key works; revoke holds', async (t) => {
  const dir = tempDir(t)
  const env = { ...process.env, DATABASE_URL: `sqlite:${join(dir, 'db', 'users.db')}` }
  const cli = async (...args: string[]) => await run(process.execPath, [CLI, ...args], { cwd: dir, env })
  const created = await cli('apps', 'create', 'shop')
  t.match(created.stdout, /^\{[^\n]*\}\n$/)
  const app = JSON.parse(created.stdout)
  t.same(Object.keys(app), ['app_id', 'name', 'api_key'])
  t.equal(app.name, 'shop')
  t.match((await cli('apps', 'list')).stdout, /shop/)
  const key = JSON.parse((await cli('keys', 'create', app.app_id, '--json')).stdout)
  const keys = JSON.parse((await cli('keys', 'list', app.app_id, '--json')).stdout)
  t.equal(keys.length, 2)
  t.match((await cli('keys', 'revoke', key.key_id)).stdout, /Revoked/)
  t.not(JSON.parse((await cli('keys', 'list', app.app_id, '--json')).stdout)[1].revoked_at, null)
  t.match((await cli('migrate')).stdout, /up to date/)
  const missing = await cli('users', 'get', app.app_id, 'nobody').catch((e: { code: number, stderr: string }) => e)
  t.match(missing, { code: 1, stderr: `No user nobody in app ${app.app_id}.\n` })
  const usage = await cli('apps', 'create').catch((e: { code: number, stderr: string }) => e)
  t.match(usage, { code: 2, stderr: /Usage/ })
  t.match((await cli('keys', 'revoke', '--help')).stdout, /Revoke a key/)
})

t.test('cli: users export stops quietly, exit 0, when its reader closes the pipe early', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'users.db')
  const env = { ...process.env, DATABASE_URL: `sqlite:${file}` }
  // Enough users that the export is still writing when the reader has gone.
  await seed(env.DATABASE_URL, 5000)
  const db = new Database(file, { readonly: true })
  const { id } = db.prepare('select id from apps').get() as { id: string }
  db.close()
  const exporter = spawn(process.execPath, [CLI, 'users', 'export', id], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  exporter.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const first = await new Promise<string>((resolve) => createInterface({ input: exporter.stdout }).once('line', resolve))
  t.match(JSON.parse(first), { userId: 'u0' })
  exporter.stdout.destroy()
  const code = await new Promise<number | null>((resolve) => exporter.once('exit', resolve))
  t.equal(code, 0)
  t.equal(stderr, '', 'no EPIPE stack trace')
})

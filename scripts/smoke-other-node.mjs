// The compiled server and CLI under another Node binary (argv[2]), as CI runs them on Node 24:
// SQLite is refused there at once, in one line (src/adapters/persistence/sqlite-runtime.ts), and
// PostgreSQL runs. What the README says of those releases, checked on a throwaway cluster: a
// first start, a user created, updated and read, the CLI beside the running server, a clean stop.
// Prints what it checked; exits 1 with the reason at the first thing that does not hold.
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'
import { startCluster } from './pg-cluster.mjs'

const node = process.argv[2]
if (node === undefined) {
  console.error('usage: node scripts/smoke-other-node.mjs <path to a node binary>')
  process.exit(2)
}
const root = resolve(import.meta.dirname, '..')
const SERVER = join(root, 'dist', 'main.js')
const CLI = join(root, 'dist', 'adapters', 'cli', 'main.js')
const run = promisify(execFile)

function check (ok, what, detail = '') {
  if (!ok) throw new Error(`${what}${detail === '' ? '' : `: ${detail}`}`)
  console.log(`ok - ${what}`)
}

const dir = mkdtempSync(join(tmpdir(), 'klaim-other-node-'))
const cluster = await startCluster({ inMemory: true })
let server
try {
  const { stdout: version } = await run(node, ['--version'])
  console.log(`# ${version.trim()}, PostgreSQL at ${cluster.url}`)
  const env = { ...process.env, PORT: '0', LOG_LEVEL: 'info', DATABASE_URL: cluster.url }

  const sqlite = await run(node, [SERVER], { cwd: dir, env: { ...env, DATABASE_URL: '' }, timeout: 30_000 }).then(() => ({ code: 0, stderr: '' }), (e) => e)
  check(sqlite.code === 1 && /^klaim-users: cannot open the database \(SQLite cannot run on Node .+\)\n$/.test(sqlite.stderr),
    'SQLite refused at once, in one line, exit 1', JSON.stringify(sqlite.stderr))

  server = spawn(node, [SERVER], { cwd: dir, env, stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise((resolve) => server.once('exit', resolve))
  const address = await new Promise((resolve, reject) => {
    server.once('exit', (code) => reject(new Error(`the server exited ${code} before it listened`)))
    createInterface({ input: server.stdout }).on('line', (line) => {
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line)
      if (match !== null) resolve(match[1])
    })
  })
  console.log(`ok - the server listens on PostgreSQL (${address})`)
  const key = readFileSync(join(dir, 'data', 'first-api-key.txt'), 'utf8').trim()
  const call = async (method, path, body) => {
    const res = await fetch(`${address}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    return { status: res.status, body: await res.json() }
  }
  const created = await call('POST', '/users', { email: 'ada@example.com', user_id: 'ada' })
  check(created.status === 201, 'a user created (201)', JSON.stringify(created))
  const updated = await call('PUT', '/users/ada', { name: 'Ada Lovelace', metadata: { plan: 'pro' } })
  check(updated.status === 200 && updated.body.name === 'Ada Lovelace', 'and updated (200)', JSON.stringify(updated))
  const read = await call('GET', '/users/ada')
  check(read.status === 200 && read.body.metadata.plan === 'pro', 'and read back (200)', JSON.stringify(read))

  const { stdout: apps } = await run(node, [CLI, 'apps', 'list', '--json'], { cwd: dir, env })
  const [app] = JSON.parse(apps)
  const { stdout: exported } = await run(node, [CLI, 'users', 'export', app.app_id], { cwd: dir, env })
  check(JSON.parse(exported).userId === 'ada', 'the CLI exports it beside the running server', exported)

  server.kill('SIGTERM')
  const code = await exited
  check(code === 0, 'SIGTERM stops the server, exit 0', String(code))
} catch (error) {
  console.error(`not ok - ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 1
} finally {
  server?.kill('SIGKILL')
  await cluster.stop()
  rmSync(dir, { recursive: true, force: true })
}

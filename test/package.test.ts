import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'

const ROOT = resolve(import.meta.dirname, '..')
const run = promisify(execFile)

t.test('the contract\'s in-process example runs as written against the built package', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'klaim-example-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const { stdout } = await run(process.execPath, [join(ROOT, 'examples', 'in-process.mjs'), `sqlite:${join(dir, 'users.db')}`], { cwd: ROOT })
  const user = JSON.parse(stdout)
  t.match(user, { userId: 'ada', email: 'ada@example.com', name: 'Ada', metadata: { plan: 'pro' }, creditBalance: 0, acquisitionSource: 'api' })
  t.match(user.etag, /^"\d+_[A-Za-z0-9]{5}\.2"$/)
  t.notOk('message' in user)
})

t.test('the package is ESM with an exports map, types and the documented names', async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
  t.equal(pkg.name, 'klaim-users')
  t.equal(pkg.type, 'module')
  t.match(pkg.exports['.'], { types: './dist/index.d.ts', import: './dist/index.js' })
  const entry = await import(join(ROOT, 'dist', 'index.js'))
  for (const name of ['openUsersService', 'usersHttpPlugin', 'ValidationError', 'UserNotFoundError', 'UserIdTakenError', 'EmailTakenError', 'PreconditionFailedError']) {
    t.ok(entry[name], name)
  }
  t.match(readFileSync(join(ROOT, 'dist', 'index.d.ts'), 'utf8'), /UserRepository/)
})

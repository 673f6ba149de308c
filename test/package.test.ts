import { execFile } from 'node:child_process'
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
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
  for (const name of ['openUsersService', 'usersHttpPlugin', 'holdContinue', 'ValidationError', 'UserNotFoundError', 'UserIdTakenError', 'EmailTakenError', 'PreconditionFailedError']) {
    t.ok(entry[name], name)
  }
  t.match(readFileSync(join(ROOT, 'dist', 'index.d.ts'), 'utf8'), /UserRepository/)
})

// A TypeScript host installs the package with its production dependencies only, brings its own
// @types/node, and type-checks with tsc's defaults (skipLibCheck off). Every declaration the
// package publishes must then resolve: none may need a type package of our dev dependencies.
t.test('a TypeScript host type-checks against the published declarations with only our production dependencies', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'klaim-host-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const modules = join(dir, 'node_modules')
  // The package as published ("files": dist), declarations only: nothing runs.
  const installed = join(modules, 'klaim-users')
  cpSync(join(ROOT, 'dist'), join(installed, 'dist'), { recursive: true, filter: (path) => statSync(path).isDirectory() || path.endsWith('.d.ts') })
  copyFileSync(join(ROOT, 'package.json'), join(installed, 'package.json'))
  // What `npm install klaim-users` brings along (the production closure), and the host's @types/node.
  const { stdout } = await run('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: ROOT })
  const topLevel = stdout.split('\n').map((path) => relative(join(ROOT, 'node_modules'), path))
    .filter((name) => name !== '' && !name.startsWith('..') && !name.includes('node_modules'))
  t.ok(topLevel.includes('fastify') && topLevel.includes('pg'), 'the production closure was listed')
  for (const name of new Set([...topLevel, '@types/node', 'undici-types'])) {
    mkdirSync(dirname(join(modules, name)), { recursive: true })
    symlinkSync(join(ROOT, 'node_modules', name), join(modules, name))
  }
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'host', private: true, type: 'module' }))
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
    // preserveSymlinks: resolve from the host's node_modules, not from this repository's.
    compilerOptions: { target: 'ES2022', module: 'NodeNext', strict: true, noEmit: true, types: ['node'], preserveSymlinks: true },
    files: ['host.ts']
  }))
  writeFileSync(join(dir, 'host.ts'), `
import { openUsersService, usersHttpPlugin, UserNotFoundError, type UserRepository, type UsersService, type UserProfile } from 'klaim-users'

const users: UsersService = await openUsersService({ databaseUrl: 'sqlite::memory:' })
const { appId } = await users.createApp({ name: 'host' })
const u: UserProfile & { etag: string } = await users.createUser({ appId, email: 'ada@example.com', userId: 'ada' })
await users.updateUserProfile({ appId, userId: 'ada', changes: { name: 'Ada', metadata: { plan: 'pro' } }, ifMatch: u.etag })
try {
  await users.getUser({ appId, userId: 'nobody' })
} catch (error) {
  if (error instanceof UserNotFoundError) console.log(error.code satisfies string)
}
const gauges: number | undefined = users.pool?.idleCount
export const parts: [typeof usersHttpPlugin, UserRepository | undefined, number | undefined] = [usersHttpPlugin, undefined, gauges]
await users.close()
`)
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
  // Without tap's coverage in the compiler's process: it measures only our code, and precise
  // coverage of the compiler itself made this check take 16 s of CPU instead of 7.
  const env = { ...process.env, _TAPJS_PROCESSINFO_COVERAGE_: '0' }
  const result = await run(process.execPath, [tsc, '-p', dir, '--listFiles'], { cwd: dir, env }).then(({ stdout }) => ({ errors: '', stdout }), (error: { stdout: string }) => ({ errors: error.stdout, stdout: '' }))
  t.equal(result.errors, '', 'no errors')
  // The declarations name no persistence library's types: a host's tsc needs not check Kysely's
  // 250 declaration files (or pg's, or better-sqlite3's) to use the package.
  const files = result.stdout.split('\n').filter((line) => line.startsWith(dir))
  t.ok(files.some((file) => file.includes('/node_modules/klaim-users/dist/index.d.ts')), 'the package\'s declarations were checked')
  const packages = new Set(files.map((file) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(file)?.[1]))
  t.same([...packages].filter((name) => name !== undefined && /^(kysely|pg|pg-.+|better-sqlite3)$/.test(name)), [], 'no Kysely, pg or better-sqlite3 declarations')
})

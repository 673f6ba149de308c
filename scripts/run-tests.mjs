// `npm test`: runs tap with the PostgreSQL half pointed at TEST_DATABASE_URL, or at a throwaway
// cluster started here when the server binaries are installed; otherwise that half is skipped
// loudly (REQUIRE_POSTGRES=1, as .ci/run sets, turns the skip into a failure).
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { findPostgresBin, startCluster } from './pg-cluster.mjs'

const required = process.env.REQUIRE_POSTGRES === '1'
const countsDir = mkdtempSync(join(tmpdir(), 'klaim-counts-'))
const env = { ...process.env, TEST_COUNTS_FILE: join(countsDir, 'counts') }
let cluster

if (env.TEST_DATABASE_URL === undefined || env.TEST_DATABASE_URL === '') {
  const bin = findPostgresBin()
  if (bin !== undefined) {
    cluster = await startCluster({ bin, log: (line) => console.log(`# ${line}`), inMemory: true })
    env.TEST_DATABASE_URL = cluster.url
  } else if (required) {
    console.error('REQUIRE_POSTGRES=1 but there is no TEST_DATABASE_URL and no PostgreSQL server under /usr/lib/postgresql')
    process.exit(1)
  } else {
    console.error('\n' + '!'.repeat(78) + '\n!!! PostgreSQL NOT AVAILABLE: the PostgreSQL half of the suite is SKIPPED.\n' +
      '!!! Set TEST_DATABASE_URL, or install the server (apt-get install postgresql).\n' + '!'.repeat(78) + '\n')
  }
}

const stop = () => cluster?.kill()
process.on('exit', stop)
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => { stop(); process.exit(130) })

const tap = spawn(process.execPath, [join('node_modules', 'tap', 'dist', 'esm', 'run.mjs'), ...process.argv.slice(2)], { env, stdio: ['inherit', 'pipe', 'inherit'] })
// Pass tap's report through, keeping its summary line ("# { total: N, pass: N, fail: N }").
let summary = ''
let tail = ''
tap.stdout.on('data', (chunk) => {
  process.stdout.write(chunk)
  const lines = (tail + chunk).split('\n')
  tail = lines.pop() ?? ''
  for (const line of lines) if (line.startsWith('# { total:')) summary = line
})
const code = await new Promise((resolve) => tap.once('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))))
if (tail.startsWith('# { total:')) summary = tail
await cluster?.stop()

const counts = { sqlite: 0, postgres: 0 }
const file = env.TEST_COUNTS_FILE
if (existsSync(file)) for (const line of readFileSync(file, 'utf8').split('\n')) if (line in counts) counts[line]++
rmSync(countsDir, { recursive: true, force: true })
console.log(`\nDatabase-backed tests run (one fresh database each): sqlite ${counts.sqlite}, postgres ${counts.postgres}`)
const count = (name) => Number(new RegExp(`${name}: (\\d+)`).exec(summary)?.[1] ?? 0)
console.log(`${count('pass')} passed, ${count('fail')} failed`)
if (required && counts.postgres === 0) {
  console.error('REQUIRE_POSTGRES=1 but no test ran on PostgreSQL')
  process.exit(1)
}
process.exit(code)

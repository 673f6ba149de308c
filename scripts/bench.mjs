// `npm run bench`: load on 127.0.0.1 with autocannon, bounded in time. Each row's server runs
// as in production (its own process, info logs) but with RATE_LIMIT_PER_MINUTE=0. Rounds
// alternate the rows (A B A B …) after a warm-up; each row's ratio is to the bare Fastify
// row of the same round. Each row also reports CPU per request of the server, the throwaway
// PostgreSQL cluster and the load generator, which the ratio alone hides: in the bare row the
// server and the load generator each use about one core, and it moves with both. The load
// generator renders each connection's requests before the clock starts (see bench-load.mjs). Writes
// bench-results/latest.json.
import { execFileSync, spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir, totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import pg from 'pg'
import { findPostgresBin, freePort, startCluster } from './pg-cluster.mjs'
import { seed } from './bench-seed.mjs'
import { CONNECTIONS, load, userLoad } from './bench-load.mjs'

const ROOT = resolve(import.meta.dirname, '..')
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 2)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2)
const SMALL = 10_000
const LARGE = Number(process.env.BENCH_LARGE_USERS ?? 1_000_000)
const REFERENCE = process.env.BENCH_REFERENCE === '1'
const KEYED = process.env.BENCH_KEYED === '1'

const work = mkdtempSync(join(tmpdir(), 'klaim-bench-'))
const children = []
let cluster

async function startServer (script, env) {
  const port = await freePort()
  const child = spawn(process.execPath, [script], {
    cwd: work,
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1', RATE_LIMIT_PER_MINUTE: '0', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'inherit']
  })
  children.push(child)
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/health`)).status < 500) break
    } catch {}
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return { url: `http://127.0.0.1:${port}`, pid: child.pid }
}

/** Peak resident set of a process since it started (VmHWM), in MB. */
function peakRssMb (pid) {
  const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return match === null ? NaN : Math.round(Number(match[1]) / 1024)
}

/** Units of /proc's CPU times: 100 a second on every Linux this runs on; `getconf` says for sure. */
function clockTicks () {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
}
const CLOCK_TICKS = clockTicks()

/** The fields of /proc/<pid>/stat after the command name (state first), or undefined if it is gone. */
function procStat (pid) {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  } catch {
    return undefined
  }
}

/** User plus system CPU of a process and all its threads so far, in µs. */
function cpuMicros (fields) {
  return fields === undefined ? 0 : (Number(fields[11]) + Number(fields[12])) * 1e6 / CLOCK_TICKS
}

/** CPU of each process of the throwaway PostgreSQL cluster (the postmaster and its children), in µs. */
function clusterCpu () {
  const root = cluster?.pid
  const byPid = new Map()
  if (root === undefined) return byPid
  byPid.set(root, cpuMicros(procStat(root)))
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const fields = procStat(entry)
    if (fields !== undefined && Number(fields[1]) === root) byPid.set(Number(entry), cpuMicros(fields))
  }
  return byPid
}

/** CPU the cluster used between two `clusterCpu` readings; a backend started in between counts whole. */
function clusterCpuSince (before) {
  let total = 0
  for (const [pid, micros] of clusterCpu()) total += micros - (before.get(pid) ?? 0)
  return total
}

/**
 * The targets of the benchmark issue, each with this run's figure. The large row's is its req/s
 * over the small PUT row's, as a mean of rounds and round by round (the two rows run minutes
 * apart in a round, and this machine's speed drifts). Rows left out (no PostgreSQL) are skipped.
 */
function issueTargets (results) {
  const row = (key) => results.find((r) => r.key === key)
  const targets = []
  const put = row('sqlite-put')
  const pgPut = row('pg-put')
  const large = row('sqlite-put-large')
  if (put !== undefined) {
    targets.push({ target: 'SQLite PUT at least 0.33 of bare', value: put.ratio.toFixed(2), met: put.ratio >= 0.33 })
    targets.push({ target: 'SQLite PUT p99 at most 20 ms', value: `${put.p99Ms} ms`, met: put.p99Ms <= 20 })
  }
  if (pgPut !== undefined) targets.push({ target: 'PostgreSQL PUT at least 0.10 of bare', value: pgPut.ratio.toFixed(2), met: pgPut.ratio >= 0.10 })
  if (put !== undefined && large !== undefined) {
    const ratio = large.rps / put.rps
    const byRound = large.rpsByRound.map((rps, i) => (rps / put.rpsByRound[i]).toFixed(2))
    // The target is for a million users; a smaller BENCH_LARGE_USERS neither meets nor misses it.
    targets.push({ target: `SQLite PUT with ${LARGE.toLocaleString('en')} users at least 0.8 of ${SMALL.toLocaleString('en')} users`, value: `${ratio.toFixed(2)} (${byRound.join(', ')})`, met: LARGE === 1_000_000 ? ratio >= 0.8 : null })
  }
  const service = results.filter((r) => /^(sqlite|pg)-/.test(r.key))
  const rss = Math.max(...service.map((r) => r.peakRssMb))
  targets.push({ target: 'peak RSS of the service at most 200 MB', value: `${rss} MB`, met: rss <= 200 })
  return targets
}

try {
  console.log(`klaim-users benchmark: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`)
  console.log(`autocannon, ${CONNECTIONS} connections, ${SECONDS} s per measurement, ${ROUNDS} alternating rounds after a ${WARMUP_SECONDS} s warm-up each; servers run with RATE_LIMIT_PER_MINUTE=0 (limiting off), LOG_LEVEL=info\n`)

  const rows = []
  const hello = await startServer(join(ROOT, 'scripts', 'bench-hello.mjs'), {})
  rows.push({ name: 'bare Fastify GET /', server: hello, url: hello.url, requests: [{ method: 'GET', path: '/' }] })

  const sqliteSmall = `sqlite:${join(work, 'small', 'users.db')}`
  mkdirSync(join(work, 'small'))
  const small = await seed(sqliteSmall, SMALL)
  const sqliteServer = await startServer(join(ROOT, 'dist', 'main.js'), { DATABASE_URL: sqliteSmall })
  rows.push({ name: `PUT SQLite (${SMALL.toLocaleString('en')} users)`, key: 'sqlite-put', server: sqliteServer, url: sqliteServer.url, prepare: userLoad('PUT', SMALL, small.apiKey) })
  if (KEYED) rows.push({ name: `PUT SQLite, Idempotency-Key (${SMALL.toLocaleString('en')} users)`, key: 'sqlite-put-keyed', server: sqliteServer, url: sqliteServer.url, prepare: userLoad('PUT', SMALL, small.apiKey, { keyed: true }) })
  if (REFERENCE) {
    // Calibration (see scripts/bench-reference.mjs): the same load on far less than the service.
    for (const [mode, name] of [['minimal', 'reference: minimal PUT on SQLite'], ['noop', 'reference: PUT route, no database']]) {
      const server = await startServer(join(ROOT, 'scripts', 'bench-reference.mjs'), { DATABASE_URL: sqliteSmall, REFERENCE: mode })
      rows.push({ name, key: `reference-${mode}`, server, url: server.url, prepare: userLoad('PUT', SMALL, small.apiKey) })
    }
  }

  let pgUrl = process.env.TEST_DATABASE_URL
  if ((pgUrl === undefined || pgUrl === '') && findPostgresBin() !== undefined) {
    cluster = await startCluster()
    pgUrl = cluster.url
  }
  let pgServer
  let pgKey
  if (pgUrl !== undefined && pgUrl !== '') {
    const admin = new pg.Client({ connectionString: pgUrl })
    await admin.connect()
    const name = `bench_${Date.now()}`
    await admin.query(`create database ${name}`)
    await admin.end()
    const url = new URL(pgUrl)
    url.pathname = `/${name}`
    pgKey = (await seed(url.toString(), SMALL)).apiKey
    pgServer = await startServer(join(ROOT, 'dist', 'main.js'), { DATABASE_URL: url.toString() })
    rows.push({ name: `PUT PostgreSQL (${SMALL.toLocaleString('en')} users)`, key: 'pg-put', server: pgServer, database: cluster !== undefined, url: pgServer.url, prepare: userLoad('PUT', SMALL, pgKey) })
    if (KEYED) rows.push({ name: `PUT PostgreSQL, Idempotency-Key (${SMALL.toLocaleString('en')} users)`, key: 'pg-put-keyed', server: pgServer, database: cluster !== undefined, url: pgServer.url, prepare: userLoad('PUT', SMALL, pgKey, { keyed: true }) })
  } else {
    console.log('PostgreSQL not available (no TEST_DATABASE_URL, no server binaries): its rows are left out.\n')
  }
  rows.push({ name: `GET SQLite (${SMALL.toLocaleString('en')} users)`, key: 'sqlite-get', server: sqliteServer, url: sqliteServer.url, prepare: userLoad('GET', SMALL, small.apiKey) })
  if (pgServer !== undefined) rows.push({ name: `GET PostgreSQL (${SMALL.toLocaleString('en')} users)`, key: 'pg-get', server: pgServer, database: cluster !== undefined, url: pgServer.url, prepare: userLoad('GET', SMALL, pgKey) })

  const sqliteLarge = `sqlite:${join(work, 'large', 'users.db')}`
  mkdirSync(join(work, 'large'))
  process.stdout.write(`seeding ${LARGE.toLocaleString('en')} users into SQLite… `)
  const seedStart = Date.now()
  const large = await seed(sqliteLarge, LARGE)
  console.log(`${((Date.now() - seedStart) / 1000).toFixed(1)} s\n`)
  const largeServer = await startServer(join(ROOT, 'dist', 'main.js'), { DATABASE_URL: sqliteLarge })
  rows.push({ name: `PUT SQLite (${LARGE.toLocaleString('en')} users)`, key: 'sqlite-put-large', server: largeServer, url: largeServer.url, prepare: userLoad('PUT', LARGE, large.apiKey) })

  // A row with prepared requests starts from a guess of its rate, then its last measurement's.
  for (const row of rows) {
    row.rps = 20_000
    row.rps = (await load(row, WARMUP_SECONDS)).total / WARMUP_SECONDS
  }
  const rounds = []
  for (let round = 0; round < ROUNDS; round++) {
    const measured = []
    for (const row of rows) {
      const server0 = cpuMicros(procStat(row.server.pid))
      const database0 = row.database ? clusterCpu() : undefined
      const client0 = process.cpuUsage()
      const result = await load(row, SECONDS)
      const client = process.cpuUsage(client0)
      row.rps = result.total / SECONDS
      measured.push({
        ...result,
        rssMb: peakRssMb(row.server.pid),
        serverCpuUs: (cpuMicros(procStat(row.server.pid)) - server0) / result.total,
        databaseCpuUs: database0 === undefined ? undefined : clusterCpuSince(database0) / result.total,
        clientCpuUs: (client.user + client.system) / result.total
      })
      process.stdout.write('.')
    }
    rounds.push(measured)
  }
  console.log('\n')

  const results = rows.map((row, i) => {
    const samples = rounds.map((r) => r[i])
    const ratios = rounds.map((r) => r[i].rps / r[0].rps)
    const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length
    return {
      name: row.name,
      key: row.key ?? 'bare',
      rps: Math.round(mean(samples.map((s) => s.rps))),
      rpsByRound: samples.map((s) => Math.round(s.rps)),
      p50Ms: Math.max(...samples.map((s) => s.p50)),
      p99Ms: Math.max(...samples.map((s) => s.p99)),
      non2xx: samples.reduce((a, s) => a + s.non2xx, 0),
      errors: samples.reduce((a, s) => a + s.errors, 0),
      requests: samples.reduce((a, s) => a + s.total, 0),
      peakRssMb: Math.max(...samples.map((s) => s.rssMb)),
      serverCpuUsPerRequest: Math.round(mean(samples.map((s) => s.serverCpuUs))),
      databaseCpuUsPerRequest: row.database ? Math.round(mean(samples.map((s) => s.databaseCpuUs))) : null,
      loadGeneratorCpuUsPerRequest: Math.round(mean(samples.map((s) => s.clientCpuUs))),
      ratio: Number(mean(ratios).toFixed(3)),
      ratios: ratios.map((r) => Number(r.toFixed(3)))
    }
  })
  for (const r of results) r.failed = r.non2xx > 0 || r.errors > 0

  const header = ['row', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx', 'errors', 'peak RSS MB', 'CPU µs/req: server', 'database', 'load generator', 'ratio to bare', 'status']
  const lines = results.map((r) => [r.name, String(r.rps), String(r.p50Ms), String(r.p99Ms), String(r.non2xx), String(r.errors), String(r.peakRssMb),
    String(r.serverCpuUsPerRequest), r.databaseCpuUsPerRequest === null ? '-' : String(r.databaseCpuUsPerRequest), String(r.loadGeneratorCpuUsPerRequest),
    `${r.ratio.toFixed(2)} (${r.ratios.join(', ')})`, r.failed ? 'FAILED' : 'ok'])
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)))
  const fmt = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`
  console.log([fmt(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...lines.map(fmt)].join('\n'))
  console.log('\nratio: the row\'s req/s over the bare Fastify req/s of the same round (mean of rounds; each round in brackets). p50/p99: worst round.')
  console.log('CPU µs/req (mean of rounds): user + system CPU per answered request of the server process (all its threads), of the throwaway PostgreSQL cluster (\'-\': not ours to measure), and of this process, the load generator.')

  const targets = issueTargets(results)
  const shortened = SECONDS < 5 || ROUNDS < 2 || WARMUP_SECONDS < 2
  console.log(`\nthe benchmark issue's targets, in this run${shortened ? ', shortened (BENCH_*): a smoke test, not a measurement' : ''}${LARGE === 1_000_000 ? '' : ' (n/a: the target is for 1,000,000 users)'}:`)
  for (const t of targets) console.log(`  ${t.met === null ? 'n/a    ' : t.met ? 'met    ' : 'not met'}  ${t.target}: ${t.value}`)

  mkdirSync(join(ROOT, 'bench-results'), { recursive: true })
  const report = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
    settings: { connections: CONNECTIONS, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS, rounds: ROUNDS, rateLimitPerMinute: 0, logLevel: 'info' },
    results,
    targets
  }
  writeFileSync(join(ROOT, 'bench-results', 'latest.json'), JSON.stringify(report, null, 2) + '\n')
  console.log('written: bench-results/latest.json')
  if (results.some((r) => r.failed)) process.exitCode = 1
} finally {
  for (const child of children) child.kill('SIGTERM')
  await Promise.all(children.map((c) => new Promise((resolve) => c.exitCode !== null ? resolve() : c.once('exit', resolve))))
  await cluster?.stop()
  rmSync(work, { recursive: true, force: true })
}

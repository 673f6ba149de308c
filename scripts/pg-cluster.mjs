// A throwaway PostgreSQL cluster for tests and benchmarks: loopback port, socket in a temp
// folder, trust auth, run as the `postgres` OS user when we are root. Stopped by pid.
import { execFileSync, spawn } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export function findPostgresBin () {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return undefined
  const versions = readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a))
  return versions.length === 0 ? undefined : join(root, versions[0], 'bin')
}

/** A free TCP port on the loopback interface. */
export async function freePort () {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

function postgresUser () {
  if (process.getuid?.() !== 0) return undefined
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'))
  if (line === undefined) throw new Error('running as root needs the postgres OS user (apt-get install postgresql)')
  const [, , uid, gid] = line.split(':')
  return { uid: Number(uid), gid: Number(gid) }
}

/**
 * Where a cluster's folder goes: the temp folder, or with `inMemory` the shared-memory file system
 * when it has room (a container's default /dev/shm of 64 MB has not).
 */
function clusterParent (inMemory) {
  const shm = '/dev/shm'
  if (!inMemory || !existsSync(shm)) return tmpdir()
  const { bavail, bsize } = statfsSync(shm)
  return bavail * bsize >= 2 ** 30 ? shm : tmpdir()
}

/**
 * Starts a cluster; returns { url, port, stop() }. `stop` is safe to call twice. `inMemory`: see
 * clusterParent; the data is thrown away anyway, and on a disk each CREATE and DROP DATABASE
 * writes and deletes a few hundred files.
 */
export async function startCluster ({ bin = findPostgresBin(), log = () => {}, inMemory = false } = {}) {
  if (bin === undefined) throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql')
  const dir = mkdtempSync(join(clusterParent(inMemory), 'klaim-pg-'))
  const data = join(dir, 'data')
  const user = postgresUser()
  if (user !== undefined) chownSync(dir, user.uid, user.gid)
  const as = user === undefined ? {} : { uid: user.uid, gid: user.gid }
  execFileSync(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync', '--locale=C'], { ...as, stdio: 'ignore' })
  const port = await freePort()
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`
  let server
  let exited

  async function startServer () {
    server = spawn(join(bin, 'postgres'), [
      '-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1',
      '-c', 'fsync=off', '-c', 'max_connections=300', '-c', 'shared_buffers=128MB'
    ], { ...as, stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    server.stderr.on('data', (chunk) => { stderr += chunk })
    exited = new Promise((resolve) => server.once('exit', resolve))
    await waitReady(bin, port, exited, () => stderr)
  }

  async function stopServer () {
    server.kill('SIGINT') // fast shutdown: clients are disconnected, data is kept
    await exited
  }

  await startServer()
  log(`PostgreSQL started on 127.0.0.1:${port} (pid ${server.pid}), data in ${dir}`)
  let stopped = false
  return {
    url,
    port,
    get pid () { return server.pid },
    /** Stops the server but keeps its data and port, for outage tests. */
    pause: stopServer,
    /** Starts a paused server again on the same port. */
    resume: startServer,
    async stop () {
      if (stopped) return
      stopped = true
      await stopServer()
      rmSync(dir, { recursive: true, force: true })
    },
    /** Synchronous best effort for process exit handlers. */
    kill () {
      if (stopped) return
      stopped = true
      try { server.kill('SIGKILL') } catch {}
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

async function waitReady (bin, port, exited, stderr) {
  let done = false
  exited.then(() => { done = true })
  for (let i = 0; i < 300; i++) {
    if (done) throw new Error(`PostgreSQL exited while starting:\n${stderr()}`)
    try {
      execFileSync(join(bin, 'pg_isready'), ['-h', '127.0.0.1', '-p', String(port), '-q'], { stdio: 'ignore' })
      return
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  throw new Error(`PostgreSQL did not become ready on port ${port}`)
}

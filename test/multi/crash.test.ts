import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import t, { type Test } from 'tap'
import { openUsersService } from '../../src/users-service.js'
import { eachDatabase } from '../helpers/databases.js'

// The compiled server, killed with SIGKILL while keyed writes are in flight, then started again
// on the same database: every acknowledged write is there, and each request's change is there
// exactly when its stored response is (the contract: "a crash can never leave one without the
// other"). The moment of the kill varies from run to run; what is checked holds at any moment.
const SERVER = join(resolve(import.meta.dirname, '..', '..'), 'dist', 'main.js')
const REQUESTS = 120
const IN_FLIGHT = 24
const KILL_AFTER = 40

interface Server { process: ChildProcess, address: string }

async function startServer (t: Test, databaseUrl: string): Promise<Server> {
  const dir = mkdtempSync(join(tmpdir(), 'klaim-crash-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const env = { ...process.env, PORT: '0', LOG_LEVEL: 'info', DATABASE_URL: databaseUrl, RATE_LIMIT_PER_MINUTE: '0' }
  const server = spawn(process.execPath, [SERVER], { cwd: dir, env, stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { server.kill('SIGKILL') })
  const address = await new Promise<string>((resolve, reject) => {
    server.once('exit', (code) => reject(new Error(`server exited ${code}`)))
    createInterface({ input: server.stdout }).on('line', (line) => {
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line)
      if (match?.[1] !== undefined) resolve(match[1])
    })
  })
  return { process: server, address }
}

// Merges go to three users, so none nears the limit of 50 metadata keys.
const MERGED = ['m0', 'm1', 'm2']

/** Request `i`: creates user `u<i>` (one in four), or sets metadata key `k<i>` on a user of MERGED; each under its own key. */
function requestOf (i: number): { method: string, path: string, body: object, key: string } {
  return i % 4 === 0
    ? { method: 'POST', path: '/users', body: { email: `u${i}@example.com`, user_id: `u${i}` }, key: `create-${i}` }
    : { method: 'PUT', path: `/users/${MERGED[i % 3]}`, body: { metadata: { [`k${i}`]: i } }, key: `merge-${i}` }
}

eachDatabase(t, (t, db) => {
  t.test('SIGKILL during keyed writes: acknowledged writes survive; a change is stored exactly with its response', async (t) => {
    const url = await db.freshShared(t)
    const setup = await openUsersService({ databaseUrl: url })
    const { appId, apiKey } = await setup.createApp({ name: 'crash' })
    for (const userId of MERGED) await setup.createUser({ appId, email: `${userId}@example.com`, userId })
    await setup.close()
    const send = async (address: string, i: number): Promise<Response> => {
      const { method, path, body, key } = requestOf(i)
      return await fetch(address + path, { method, headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', 'idempotency-key': key }, body: JSON.stringify(body) })
    }

    const first = await startServer(t, url)
    const exited = new Promise((resolve) => first.process.once('exit', resolve))
    const acknowledged = new Set<number>()
    const before: number[] = []
    let next = 0
    // IN_FLIGHT clients, each sending its next request when the last is answered; the one whose
    // answer makes KILL_AFTER kills the server, with the others' requests still in flight.
    await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
      while (next < REQUESTS) {
        const i = next++
        let res: Response
        try {
          res = await send(first.address, i)
        } catch {
          return // the server is gone
        }
        before.push(res.status)
        acknowledged.add(i)
        if (acknowledged.size === KILL_AFTER) first.process.kill('SIGKILL')
      }
    }))
    await exited
    const sent = next
    t.ok(before.every((s) => s === 200 || s === 201), 'every answer before the kill is a success')
    t.ok(sent > acknowledged.size, `killed with requests unanswered (${sent} sent, ${acknowledged.size} answered)`)

    const second = await startServer(t, url)
    const read = async (userId: string): Promise<Response> => await fetch(`${second.address}/users/${userId}`, { headers: { authorization: `Bearer ${apiKey}` } })
    const metadata: Record<string, number> = {}
    for (const userId of MERGED) {
      const res = await read(userId)
      const user = (await res.json()) as { klaim_id: string, metadata: Record<string, number> }
      t.equal(res.headers.get('etag'), `"${user.klaim_id}.${1 + Object.keys(user.metadata).length}"`, `${userId}: one version per merge stored, and no other`)
      Object.assign(metadata, user.metadata)
    }
    const created = new Set<number>()
    for (let i = 0; i < sent; i += 4) if ((await read(`u${i}`)).status === 200) created.add(i)
    const stored = (i: number): boolean => i % 4 === 0 ? created.has(i) : metadata[`k${i}`] === i
    t.same([...acknowledged].filter((i) => !stored(i)), [], 'every acknowledged write survived')

    // The same requests again: a replay exactly where the change is stored; where it is not,
    // the request runs now (its claim was released or never made) or its claim is still held.
    const outcomes: Record<string, number> = {}
    const wrong: string[] = []
    for (let i = 0; i < sent; i++) {
      const res = await send(second.address, i)
      const body = (await res.json()) as { code?: string }
      const outcome = res.headers.get('idempotent-replayed') === 'true'
        ? 'replayed'
        : res.status === 409 && body.code === 'idempotency_in_progress' ? 'in progress' : res.status === 200 || res.status === 201 ? 'ran now' : `${res.status} ${body.code}`
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1
      const expected = stored(i) ? ['replayed'] : ['ran now', 'in progress']
      if (!expected.includes(outcome)) wrong.push(`request ${i}: ${stored(i) ? 'stored' : 'not stored'}, but ${outcome}`)
    }
    t.same(wrong, [], `a replay exactly where the change is stored (retries: ${JSON.stringify(outcomes)})`)
  })
})

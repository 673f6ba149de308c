// The bench's load (see bench.mjs): autocannon on 127.0.0.1, each connection's requests
// rendered before the clock starts.
import { randomUUID } from 'node:crypto'
import autocannon from 'autocannon'

export const CONNECTIONS = 50

/**
 * A row's load on random users among the seeded ones; for a PUT, a body that no other request of
 * the row and no seeded user has (a real write every time: a body the user has already would
 * change nothing). `keyed`: each PUT with an `Idempotency-Key` of its own. Returns
 * `perConnection` requests for one connection to `host`, rendered as autocannon renders them.
 */
export function userLoad (method, users, apiKey, { keyed = false } = {}) {
  const headers = `authorization: Bearer ${apiKey}\r\ncontent-type: application/json`
  // Keys are the API key's: unique across the rows that share it.
  const keys = randomUUID()
  let written = 0
  return (perConnection, host) => Array.from({ length: perConnection }, () => {
    const head = `${method} /users/u${Math.floor(Math.random() * users)} HTTP/1.1\r\nHost: ${host}\r\nConnection: keep-alive\r\n${headers}`
    if (method !== 'PUT') return Buffer.from(`${head}\r\n\r\n`)
    written++
    // The seed names its users "Name <i>".
    const body = `{"name":"Load ${written}","metadata":{"k":${written}}}`
    const key = keyed ? `\r\nidempotency-key: ${keys}-${written}` : ''
    return Buffer.from(`${head}${key}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  })
}

/**
 * Hands a connection its requests, rendered. autocannon has no public way to: a request built by
 * a `setupRequest` hook it renders anew for every one it sends (about 10 µs of the load
 * generator's CPU per request in `--cpu-prof`, on the same two cores as the server), and
 * `setRequests` renders each again, with a copy of its headers (about 3 µs and 900 bytes a
 * request, whose collection costs the load generator more). The bare row's one fixed request it
 * renders once.
 */
export function handOver (client, requests) {
  const iterator = client.requestIterator
  if (!Array.isArray(iterator?.requests)) throw new Error('autocannon no longer keeps its requests where the bench hands them over (client.requestIterator)')
  iterator.requests = requests.map((requestBuffer) => ({ requestBuffer }))
  iterator.currentRequestIndex = 0
  iterator.currentRequest = iterator.requests[0]
}

/**
 * Loads a row for `seconds`. A row with prepared requests (see `userLoad`) gets enough for each
 * connection at 1.5 times the rate it last ran at (`row.rps`), rendered before the clock starts;
 * a connection that has sent them all before the time is up gets more then, rather than send one
 * twice. `limits`: more autocannon options, such as `maxOverallRequests` (the tests' bound).
 */
export async function load (row, seconds, limits = {}) {
  const options = { url: row.url, connections: CONNECTIONS, duration: seconds, timeout: 10, ...limits }
  if (row.prepare === undefined) {
    options.requests = row.requests
  } else {
    const host = new URL(row.url).host
    const perConnection = Math.ceil(1.5 * row.rps * seconds / CONNECTIONS) + 100
    options.setupClient = (client) => {
      handOver(client, row.prepare(perConnection, host))
      let sent = 0
      // Emitted for each request about to be sent (a reconnection sends one too), before the
      // client moves to its next one: after a hand-over, the second of the new.
      client.on('request', () => {
        if (++sent > perConnection && (sent - 1) % perConnection === 0) handOver(client, row.prepare(perConnection + 1, host))
      })
    }
  }
  const result = await autocannon(options)
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    total: result.requests.total
  }
}

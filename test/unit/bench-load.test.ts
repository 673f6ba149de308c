import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { CONNECTIONS, load, userLoad } from '../../scripts/bench-load.mjs'

// autocannon's own rendering of a request, which the bench's must match byte for byte.
const buildRequest = createRequire(import.meta.url)('autocannon/lib/httpRequestBuilder.js') as
  (defaults: { hostname: string, port: number }) => (request: { method: string, path: string, headers: Record<string, string>, body?: string }) => Buffer

t.test('the bench renders a request as autocannon does', async (t) => {
  const render = buildRequest({ hostname: '127.0.0.1', port: 4000 })
  const headers = { authorization: 'Bearer KEY', 'content-type': 'application/json' }
  const [get] = userLoad('GET', 1, 'KEY')(1, '127.0.0.1:4000')
  t.equal(get?.toString(), render({ method: 'GET', path: '/users/u0', headers }).toString())
  const [put] = userLoad('PUT', 1, 'KEY')(1, '127.0.0.1:4000')
  t.equal(put?.toString(), render({ method: 'PUT', path: '/users/u0', headers, body: '{"name":"Load 1","metadata":{"k":1}}' }).toString())
  const [keyed, next] = userLoad('PUT', 1, 'KEY', { keyed: true })(2, '127.0.0.1:4000')
  const key = /idempotency-key: (\S+)-1\r\n/.exec(keyed?.toString() ?? '')?.[1]
  t.ok(key !== undefined)
  t.equal(keyed?.toString(), render({ method: 'PUT', path: '/users/u0', headers: { ...headers, 'idempotency-key': `${key}-1` }, body: '{"name":"Load 1","metadata":{"k":1}}' }).toString())
  t.match(next?.toString(), `idempotency-key: ${key}-2\r\n`, 'a key of its own for each')
  const [other] = userLoad('PUT', 1, 'KEY', { keyed: true })(1, '127.0.0.1:4000')
  t.notMatch(other?.toString(), `idempotency-key: ${key}-`, 'and for each row')
})

t.test('a load sends no PUT twice, though its connections run out of requests and are handed more', async (t) => {
  const received = new Map<string, number>()
  const server = createServer((request, response) => {
    let body = ''
    request.setEncoding('utf8')
    request.on('data', (chunk: string) => { body += chunk })
    request.on('end', () => {
      const seen = `${request.url ?? ''} ${body}`
      received.set(seen, (received.get(seen) ?? 0) + 1)
      response.end('{}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const { port } = server.address() as AddressInfo

  // At a rate of 1 a second, each connection is given 101 requests: 300 each means two hand-overs.
  const requests = 300 * CONNECTIONS
  const result = await load({ url: `http://127.0.0.1:${port}`, rps: 1, prepare: userLoad('PUT', 1000, 'KEY') }, 30, { maxOverallRequests: requests })
  t.equal(result.total, requests)
  t.equal(result.non2xx + result.errors, 0)
  t.equal(received.size, requests, 'every request a different user or body')
  t.same([...received.values()].filter((count) => count > 1), [])
  t.ok([...received.keys()].every((seen) => /^\/users\/u\d{1,3} \{"name":"Load \d+","metadata":\{"k":\d+\}\}$/.test(seen)))
})

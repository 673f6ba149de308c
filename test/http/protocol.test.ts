import type { IncomingMessage } from 'node:http'
import { connect, type Socket } from 'node:net'
import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { buildHttpApp, loggerOptions } from '../../src/adapters/http/app.js'
import { openUsersService, type UsersService } from '../../src/users-service.js'

// Requests that Node's HTTP parser refuses never reach Fastify's routing, so `inject` cannot
// send them: these tests talk to a listening server over a socket, byte for byte.

interface RawResponse { status: number, headers: Record<string, string>, body: string }

/** Writes `raw`, half-closes, and reads everything the server sends until it closes. */
async function exchangeText (port: number, raw: string | Buffer): Promise<string> {
  return await new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', reject)
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')))
    socket.end(raw)
  })
}

/**
 * Writes `head` (a request with `Expect: 100-continue`), then `body` and a half-close only once
 * a `100 Continue` has come; reads everything until the server closes.
 */
async function expectingContinue (port: number, head: string, body: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let text = ''
    let sent = false
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8')
      if (!sent && text.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) {
        sent = true
        socket.end(body)
      }
    })
    socket.on('error', reject)
    socket.on('close', () => resolve(text))
    socket.write(head)
  })
}

/**
 * The service over an in-memory database, listening on a free loopback port until the test ends;
 * `logged` gathers its log lines.
 */
async function listening (t: Test): Promise<{ service: UsersService, port: number, logged: string[], app: FastifyInstance }> {
  const service = await openUsersService({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await service.close())
  const logged: string[] = []
  const stream = new Writable({ write (chunk, _enc, done) { logged.push(String(chunk)); done() } })
  const app = await buildHttpApp({ service, logger: { ...loggerOptions('info'), stream } })
  t.teardown(async () => await app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { service, port: (app.server.address() as { port: number }).port, logged, app }
}

/** Writes `raw`, half-closes, and reads the whole answer until the server closes. */
async function exchange (port: number, raw: string | Buffer): Promise<RawResponse> {
  const text = await exchangeText(port, raw)
  const [head = '', ...rest] = text.split('\r\n\r\n')
  const [statusLine = '', ...lines] = head.split('\r\n')
  const headers = Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]))
  return { status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n') }
}

t.test('requests the HTTP parser refuses get the contract\'s error shape, a request id and a log line', async (t) => {
  const { service, port, logged } = await listening(t)
  const { apiKey } = await service.createApp({ name: 'test' })
  const auth = `Authorization: Bearer ${apiKey}\r\n`

  const cases: Array<[string, string | Buffer, number, { message: string, code: string }]> = [
    ['a header name with a space', `GET /users/ada HTTP/1.1\r\nHost: x\r\n${auth}Bad Header: 1\r\n\r\n`, 400, { message: 'The request is malformed.', code: 'bad_request' }],
    ['a request line that is not HTTP', 'HELLO\r\n\r\n', 400, { message: 'The request is malformed.', code: 'bad_request' }],
    ['a body cut short of its Content-Length', `PUT /users/ada HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{}`, 400, { message: 'The request is malformed.', code: 'bad_request' }],
    ['raw UTF-8 bytes in the path', Buffer.from(`GET /users/é HTTP/1.1\r\nHost: x\r\n${auth}\r\n`), 400, { message: 'The URL is not valid.', code: 'invalid_url' }],
    ['headers over 16 KiB', `GET /users/ada HTTP/1.1\r\nHost: x\r\n${auth}X-Big: ${'a'.repeat(17_000)}\r\n\r\n`, 431, { message: 'The request headers are larger than 16384 bytes.', code: 'headers_too_large' }],
    ['an HTTP/1.1 request without Host', `GET /users/ada HTTP/1.1\r\n${auth}\r\n`, 400, { message: 'The request is malformed.', code: 'bad_request' }]
  ]
  for (const [what, raw, status, body] of cases) {
    const res = await exchange(port, raw)
    t.equal(res.status, status, what)
    t.same(JSON.parse(res.body), body, what)
    t.equal(res.headers['content-type'], 'application/json; charset=utf-8', what)
    t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/, what)
    t.ok(logged.some((line) => JSON.parse(line).reqId === res.headers['x-request-id']), `${what}: the log line carries the request id`)
  }
  t.notMatch(logged.join(''), apiKey.slice(9), 'the API key in the refused bytes is not logged')

  // A complete request, then a malformed one, in one write: the first may run, so a 400 must not
  // come back as if it answered it. The connection is closed instead.
  const body = '{"email":"ada@example.com","user_id":"ada"}'
  const pipelined = await exchange(port, `POST /users HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}GET /x HTTP/1.1\r\nBad Header: 1\r\n\r\n`)
  t.notOk(pipelined.status === 400, 'no 400 in answer to the request before the bad one')

  const noHost = await exchange(port, 'GET /health HTTP/1.0\r\n\r\n')
  t.equal(noHost.status, 200, 'HTTP/1.0 has no Host to require')
  const ok = await exchange(port, `GET /users/ada HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`)
  t.ok([200, 404].includes(ok.status), 'a well-formed request on a new connection is served as usual')
})

t.test('an Expect other than 100-continue is a 417 in the contract\'s shape, with a request id and a log line; nothing runs', async (t) => {
  const { service, port, logged } = await listening(t)
  const { appId, apiKey } = await service.createApp({ name: 'test' })
  await service.createUser({ appId, email: 'ada@example.com', userId: 'ada', name: 'Ada' })
  const body = '{"name": "Eve"}'
  const put = (expect: string) => `PUT /users/ada HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${apiKey}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${body.length}\r\nExpect: ${expect}\r\n\r\n${body}`
  const unmet = { message: 'The request expects what this service does not do: Expect may only be 100-continue.', code: 'expectation_failed' }
  for (const expect of ['something', '200-ok', 'continue']) {
    // The body sent anyway, then a second request on the same connection: it is served.
    const text = await exchangeText(port, `${put(expect)}GET /health HTTP/1.1\r\nHost: x\r\n\r\n`)
    const [first = '', second = ''] = text.split(/(?=HTTP\/1\.1 )/)
    t.match(first, /^HTTP\/1\.1 417 Expectation Failed\r\n/, expect)
    t.match(first, /\r\ncontent-type: application\/json; charset=utf-8\r\n/i)
    t.same(JSON.parse(first.slice(first.indexOf('\r\n\r\n') + 4)), unmet)
    const requestId = /\r\nx-request-id: ([0-9a-f-]{36})\r\n/i.exec(first)?.[1]
    t.ok(logged.some((line) => JSON.parse(line).reqId === requestId && JSON.parse(line).res?.statusCode === 417), `${expect}: the log line carries the request id`)
    t.match(second, /^HTTP\/1\.1 200 OK\r\n[^]*\{"status":"ok"\}$/, `${expect}: the connection serves the next request`)
  }
  t.equal((await service.getUser({ appId, userId: 'ada' })).name, 'Ada', 'nothing was applied')
  t.equal((await exchange(port, 'GET /nowhere HTTP/1.1\r\nHost: x\r\nExpect: something\r\n\r\n')).status, 417, 'before routing, as Node answers it')
  const served = await exchangeText(port, put('100-continue, something'))
  t.match(served, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n/, 'a list that names 100-continue is served, as Node reads it')
})

t.test('CONNECT is a 404 not_found in the contract\'s shape, with a request id and a log line, and the connection closed', async (t) => {
  const { port, logged, app } = await listening(t)
  const notFound = { message: 'There is no such route.', code: 'not_found' }
  for (const target of ['127.0.0.1:443', '/users/ada']) {
    // Bytes after the head would be the tunnel's: dropped, and the next request is not served.
    const res = await exchange(port, `CONNECT ${target} HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n`)
    t.equal(res.status, 404, target)
    t.same(JSON.parse(res.body), notFound, target)
    t.equal(res.headers['content-type'], 'application/json; charset=utf-8')
    t.equal(res.headers.connection, 'close')
    t.ok(logged.some((line) => JSON.parse(line).reqId === res.headers['x-request-id'] && JSON.parse(line).req.method === 'CONNECT'), `${target}: the log line carries the request id`)
  }
  t.equal((await exchange(port, 'CONNECT x:1 HTTP/1.1\r\nHost: x\r\nX-Request-Id: tunnel.1\r\n\r\n')).headers['x-request-id'], 'tunnel.1', 'the client\'s own request id')
  // A client that keeps its side open does not keep the server's: it closes it within a second.
  const closedByServer = new Promise<void>((resolve) => app.server.once('connection', (socket: Socket) => socket.once('close', () => resolve())))
  const client = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  t.teardown(() => client.destroy())
  let received = ''
  client.on('data', (chunk: Buffer) => { received += chunk.toString('utf8') })
  client.write('CONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\n')
  await closedByServer
  t.match(received, /^HTTP\/1\.1 404 Not Found\r\n/)
  t.notOk(client.destroyed, 'while the client still holds its side')
})

t.test('a stop serves the requests in flight, and those already sent after them, then closes their keep-alive connections', async (t) => {
  const { service, port, app } = await listening(t)
  const { appId, apiKey } = await service.createApp({ name: 'test' })
  await service.createUser({ appId, email: 'ada@example.com', userId: 'ada', name: 'Ada' })
  const client = () => {
    const socket = connect(port, '127.0.0.1')
    let received = ''
    socket.on('data', (chunk: Buffer) => { received += chunk.toString('utf8') })
    const closed = new Promise<string>((resolve, reject) => {
      socket.on('error', reject)
      socket.on('close', () => resolve(received))
    })
    return { socket, closed }
  }
  const put = (name: string): [string, string] => {
    const body = `{"name": "${name}"}`
    return [`PUT /users/ada HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${apiKey}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 3)}`, body.slice(3)]
  }
  // Two keep-alive clients, each with a request under way (its body not whole) when the stop begins.
  const started = new Promise<void>((resolve) => { let count = 0; app.server.on('request', () => { if (++count === 2) resolve() }) })
  const [a, b] = [client(), client()]
  const [aHead, aRest] = put('Eve')
  const [bHead, bRest] = put('Bob')
  a.socket.write(aHead)
  b.socket.write(bHead)
  await started
  const stopped = app.close()
  // The stop has begun once the server stops listening (Fastify closes it after its preClose
  // hooks, a few turns of the event loop in): a condition, not a timer.
  while (app.server.listening) await new Promise(setImmediate)
  a.socket.write(aRest)
  // b sends another request on its connection before its first answer comes: it is served too.
  b.socket.write(`${bRest}GET /users/ada HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${apiKey}\r\n\r\n`)
  // Neither client closes its connection: the server does, once each has its answers.
  const [aText, bText] = await Promise.all([a.closed, b.closed])
  await stopped
  t.match(aText, /^HTTP\/1\.1 200 OK\r\n[^]*"name":"Eve"/)
  t.equal(aText.match(/HTTP\/1\.1 /g)?.length, 1)
  const [first = '', second = ''] = bText.split(/(?=HTTP\/1\.1 )/)
  t.match(first, /^HTTP\/1\.1 200 OK\r\n[^]*"name":"Bob"/)
  t.match(second, /^HTTP\/1\.1 200 OK\r\n/, 'the request sent after the stop began: served, not refused')
  t.match(second, /\r\nconnection: close\r\n/i, 'and the client told to send no more there')
  t.match(second, /\r\nx-request-id: /i)
})

t.test('a request not received whole in time is a 408 request_timeout', async (t) => {
  const service = await openUsersService({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await service.close())
  const app = await buildHttpApp({ service, requestTimeoutMs: 200 })
  t.teardown(async () => await app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const { apiKey } = await service.createApp({ name: 'test' })
  // The body never arrives whole: the server, not the test, ends the exchange.
  const res = await new Promise<string>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let text = ''
    socket.on('data', (chunk: Buffer) => { text += chunk.toString('utf8') })
    socket.on('error', reject)
    socket.on('close', () => resolve(text))
    socket.write(`PUT /users/ada HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${apiKey}\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{"na`)
  })
  t.match(res, /^HTTP\/1\.1 408 /)
  t.match(res, /\r\ncontent-type: application\/json; charset=utf-8\r\n/)
  t.same(JSON.parse(res.slice(res.indexOf('\r\n\r\n') + 4)), { message: 'The request was not received in time.', code: 'request_timeout' })
})

t.test('a client that hangs up in the middle of its body gets one info line, not an error or a 503', async (t) => {
  const service = await openUsersService({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await service.close())
  const logged: Array<{ level: number, reqId?: string, msg: string }> = []
  const stream = new Writable({ write (chunk, _enc, done) { logged.push(JSON.parse(String(chunk))); done() } })
  const app = await buildHttpApp({ service, logger: { ...loggerOptions('info'), stream } })
  t.teardown(async () => await app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const { apiKey } = await service.createApp({ name: 'test' })

  // Barrier: the server is reading the body (Fastify has resumed the request stream).
  const reading = new Promise<void>((resolve) => {
    app.server.once('request', (request: IncomingMessage) => {
      const poll = (): void => { if (request.readableFlowing === true) resolve(); else setImmediate(poll) }
      poll()
    })
  })
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  socket.write(`PUT /users/ada HTTP/1.1\r\nHost: x\r\nX-Request-Id: cut-short\r\nAuthorization: Bearer ${apiKey}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"na`)
  await reading
  socket.destroy()
  while (!logged.some((line) => line.reqId === 'cut-short')) await new Promise((resolve) => setImmediate(resolve))
  // The error the body's reading ends with, if any, comes before the abort's line.
  const lines = logged.filter((line) => line.reqId === 'cut-short')
  t.same(lines.map((line) => [line.level, line.msg]), [[30, 'request aborted by the client']], 'one info line: no error line, no 503')
  t.match(lines[0], { req: { method: 'PUT', route: '/users/:user_id' } })
})

t.test('a client that half-closes after its request still gets the answer (printf ... | nc)', async (t) => {
  const service = await openUsersService({ databaseUrl: 'sqlite::memory:' })
  t.teardown(async () => await service.close())
  // Barrier: /ready answers only once the server has read the client's FIN, as it would when
  // the database is a network round trip away.
  let finRead!: () => void
  const fin = new Promise<void>((resolve) => { finRead = resolve })
  const app = await buildHttpApp({ service: { ...service, ping: async () => { await fin; await service.ping() } } })
  t.teardown(async () => await app.close())
  app.server.on('connection', (socket: Socket) => socket.once('end', finRead))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const res = await exchange(port, 'GET /ready HTTP/1.0\r\n\r\n')
  t.equal(res.status, 200)
  t.same(JSON.parse(res.body), { status: 'ready' })
})

t.test('a body refused once read whole keeps the connection for the next request; one over the limit closes it', async (t) => {
  const { service, port } = await listening(t)
  const { apiKey } = await service.createApp({ name: 'test' })
  const put = (body: Buffer, type = 'application/json', line = 'PUT /users/ada', key = apiKey): Buffer => Buffer.concat([
    Buffer.from(`${line} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: ${type}\r\nContent-Length: ${body.length}\r\n\r\n`),
    body
  ])
  const next = Buffer.from('GET /health HTTP/1.1\r\nHost: x\r\n\r\n')
  // An answer's status line follows the previous answer's body directly.
  const statuses = (text: string): number[] => [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((match) => Number(match[1]))

  const cases: Array<[string, Buffer, number[]]> = [
    // Fastify closes the connection after any parser error; these came once the body was read.
    ['invalid JSON', put(Buffer.from('{"name": ')), [400, 200]],
    ['an empty body', put(Buffer.alloc(0)), [400, 200]],
    ['bytes that are not UTF-8', put(Buffer.from([0x7b, 0xff, 0x7d])), [400, 200]],
    // Refused from its headers: Node reads past the unread body to the next request.
    ['a refused charset', put(Buffer.from('{}'), 'application/json; charset=latin1'), [415, 200]],
    ['a wrong key', put(Buffer.from('{}'), 'application/json', 'PUT /users/ada', 'klaim_sk_wrong'), [401, 200]],
    ['an unknown method', put(Buffer.from('{}'), 'application/json', 'DELETE /users/ada'), [404, 200]],
    // Over the limit: refused from its Content-Length, and the rest may still be on its way, so
    // nothing more is read from the connection.
    ['a body over the limit', put(Buffer.from(`{"name": "${'x'.repeat(70_000)}"}`)), [413]]
  ]
  for (const [what, request, expected] of cases) {
    const text = await exchangeText(port, Buffer.concat([request, next]))
    t.same(statuses(text), expected, what)
    t.equal(/^connection: close/im.test(text), expected.length === 1, `${what}: connection: close only when it closes`)
  }
})

t.test('Expect: 100-continue: the 100 comes once the checks made from the headers pass, or not at all', async (t) => {
  const { service, port } = await listening(t)
  const { appId, apiKey } = await service.createApp({ name: 'test' })
  await service.createUser({ appId, email: 'ada@example.com', userId: 'ada' })
  const body = '{"name": "Ada"}'
  const head = (line: string, key: string, type: string, length = body.length): string =>
    `${line} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: ${type}\r\nContent-Length: ${length}\r\nExpect: 100-continue\r\n\r\n`

  const accepted = await expectingContinue(port, head('PUT /users/ada', apiKey, 'application/json'), body)
  t.match(accepted, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n/, 'the 100, then the answer to the body sent after it')
  t.match(accepted, /"name":"Ada"/)

  // Refused from the headers: the final status at once, with no 100, so the body is never sent.
  const refused: Array<[string, string, number]> = [
    ['a wrong key', head('PUT /users/ada', 'klaim_sk_wrong', 'application/json'), 401],
    ['a refused content type', head('PUT /users/ada', apiKey, 'application/json; charset=latin1'), 415],
    ['a body over the limit', head('PUT /users/ada', apiKey, 'application/json', 70_000), 413],
    ['an unknown route', head('DELETE /users/ada', apiKey, 'application/json'), 404]
  ]
  for (const [what, request, status] of refused) {
    const text = await expectingContinue(port, request, '{"name": "Bob"}')
    t.match(text, new RegExp(`^HTTP/1\\.1 ${status} `), what)
    t.notMatch(text, /100 Continue/, `${what}: no 100`)
  }
  t.equal((await service.getUser({ appId, userId: 'ada' })).name, 'Ada', 'only the accepted body was applied')
})

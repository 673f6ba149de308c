import { randomUUID } from 'node:crypto'
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { sendProblem } from './error-handler.js'
import { holdContinue, serveUnmetExpectations, unmetExpectation } from './expect-continue.js'
import { FIELD_MESSAGES } from '../../domain/profile-rules.js'
import { HttpProblem, invalidRequest, MESSAGES, problemBody, unavailable } from './problems.js'
import { registerMetrics, type MetricsOptions } from './metrics.js'
import { registerOpenApi } from './openapi.js'
import { unavailableResponse } from './responses.js'
import { HealthBody } from './schemas.js'
import { usersHttpPlugin, type UsersHttpOptions, type UsersHttpService } from './users-plugin.js'

/** The users routes' options (their rate limits), and the whole app's. */
export interface HttpAppOptions extends UsersHttpOptions {
  service: UsersHttpService & { ping(): Promise<void> }
  /** Prometheus metrics at /metrics (default on); `false` turns them off. */
  metrics?: false | MetricsOptions
  /**
   * Proxies (addresses, CIDR ranges, or `loopback`, `linklocal`, `uniquelocal`) whose
   * `X-Forwarded-For` names the client, for the per-IP limit on failed authentications and the
   * logs. None by default: behind a proxy every client would otherwise share the proxy's address.
   */
  trustProxy?: string[]
  /** How long a client may take to send one whole request, headers and body (default 30 s; 0: no limit); then 408. */
  requestTimeoutMs?: number
  /** OpenAPI at /openapi.json and the docs page at /docs (default on). */
  docs?: boolean
  /** Pino options, `false` for silence; see `loggerOptions`. */
  logger?: FastifyServerOptions['logger']
  loggerInstance?: FastifyServerOptions['loggerInstance']
}

const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** The client's own `x-request-id` when it is one the contract keeps, else a new one. */
function requestIdOf (request: IncomingMessage): string {
  const sent = request.headers['x-request-id']
  return typeof sent === 'string' && CLIENT_REQUEST_ID.test(sent) ? sent : randomUUID()
}

const FRAMEWORK_PROBLEMS: Record<string, () => HttpProblem> = {
  FST_ERR_BAD_URL: () => new HttpProblem(400, 'invalid_url', MESSAGES.invalidUrl),
  // Only /users/:user_id has a parameter, and 3072 characters exceed any valid encoded user_id.
  FST_ERR_MAX_PARAM_LENGTH: () => invalidRequest([{ path: '/path/user_id', message: FIELD_MESSAGES.userId }])
}

/** Errors of Node's HTTP parser, raised before Fastify sees a request (see `answerClientError`). */
const CLIENT_ERROR_PROBLEMS: Record<string, () => HttpProblem> = {
  HPE_HEADER_OVERFLOW: () => new HttpProblem(431, 'headers_too_large', MESSAGES.headersTooLarge),
  HPE_INVALID_URL: () => new HttpProblem(400, 'invalid_url', MESSAGES.invalidUrl),
  ERR_HTTP_REQUEST_TIMEOUT: () => new HttpProblem(408, 'request_timeout', MESSAGES.requestTimeout)
}

/**
 * Answers a request Node's HTTP parser refused (a malformed request line or header, headers over
 * 16 KiB, a body cut short) in the contract's error shape, with a request id that the log line
 * carries too, where Fastify's default writes a body of its own. The connection is then closed,
 * as the rest of its bytes cannot be trusted.
 */
function answerClientError (this: FastifyInstance, error: Error & { code?: string }, socket: Socket & { _httpMessage?: ServerResponse | null }): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const problem = CLIENT_ERROR_PROBLEMS[error.code ?? '']?.() ?? new HttpProblem(400, 'bad_request', MESSAGES.badRequest)
  const requestId = randomUUID()
  // Not the error itself: its rawPacket holds the request's bytes, API key included.
  this.log.info({ reqId: requestId, parserError: error.code, res: { statusCode: problem.statusCode } }, 'malformed request refused')
  // A pipelined request received whole before the bad one may still be answering (Node keeps its
  // response as the socket's _httpMessage): a 400 now would read as its answer, though it may
  // have run. Then the connection is only closed.
  const answering = socket._httpMessage
  if (socket.writable && (answering == null || !answering.req.complete)) socket.write(answerText(problem, requestId))
  socket.destroy()
}

/** `problem` as a whole HTTP/1.1 answer that closes the connection, for a socket Fastify does not answer. */
function answerText (problem: HttpProblem, requestId: string): string {
  const body = JSON.stringify(problemBody(problem))
  return `HTTP/1.1 ${problem.statusCode} ${STATUS_CODES[problem.statusCode] ?? ''}\r\n` +
    `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
    `x-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`
}

/**
 * Answers a `CONNECT` (a request for a tunnel, which Node hands over as a bare socket and closes
 * unanswered when nobody takes it) with the 404 `not_found` of every method the API does not
 * have, then closes the connection: what follows its head would be the tunnel's bytes. Those are
 * read and dropped until the client closes its side (so the close sends no reset that could cut
 * the answer short), for a second at most.
 */
function answerConnect (this: FastifyInstance, request: IncomingMessage, socket: Duplex): void {
  const requestId = requestIdOf(request)
  this.log.info({ reqId: requestId, req: { method: request.method, ip: request.socket.remoteAddress }, res: { statusCode: 404 } }, 'request completed')
  socket.on('error', () => {})
  socket.resume()
  socket.end(answerText(new HttpProblem(404, 'not_found', MESSAGES.notFound), requestId))
  const lingering = setTimeout(() => socket.destroy(), 1000)
  socket.on('close', () => clearTimeout(lingering))
}

/**
 * Pino settings that keep secrets and personal data out of the logs: no headers at all, and the
 * route pattern (`/users/:user_id`) instead of the URL, since a user_id is often an email.
 */
export function loggerOptions (level: string): NonNullable<Exclude<FastifyServerOptions['logger'], boolean>> {
  return {
    level,
    serializers: {
      req: (request: { method: string, routeOptions?: { url?: string }, ip?: string }) => ({
        method: request.method,
        route: request.routeOptions?.url ?? '(no route)',
        remoteAddress: request.ip
      }),
      err: (error: Error & { code?: unknown }) => ({ type: error.name, message: error.message, code: error.code, stack: error.stack ?? '' })
    }
  }
}

/** The whole HTTP service on one Fastify instance, ready for `listen` or `inject`. */
export async function buildHttpApp (options: HttpAppOptions): Promise<FastifyInstance> {
  const requestTimeout = options.requestTimeoutMs ?? 30_000
  const app = Fastify({
    logger: options.loggerInstance === undefined ? options.logger ?? false : undefined,
    loggerInstance: options.loggerInstance,
    // A user_id may be 255 characters, percent-encoded up to 12 bytes each.
    routerOptions: { maxParamLength: 3072 },
    bodyLimit: 64 * 1024,
    requestIdHeader: false,
    trustProxy: options.trustProxy !== undefined && options.trustProxy.length > 0 ? options.trustProxy : false,
    // One line per request, written when it completes (see the onResponse hook), not two.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: requestIdOf,
    // Raised before routing, so before the hooks: the request id is set here too.
    frameworkErrors: (error, request, reply) => {
      reply.header('x-request-id', request.id)
      sendProblem(FRAMEWORK_PROBLEMS[error.code]?.() ?? error, request, reply)
    },
    clientErrorHandler: answerClientError,
    // While the server stops, a request already on its way on an open connection (pipelined, or
    // sent as another finished) is served like those in flight, with `Connection: close` so the
    // client sends no more there. Fastify's default answers it with a 503 of its own shape,
    // without the request id, which the client would have to retry.
    return503OnClosing: false,
    // Fastify's default is no limit: a client trickling a body could hold a connection forever.
    requestTimeout,
    http: {
      // Node would answer a missing Host with an empty 400 of its own; the hook below answers it.
      requireHostHeader: false,
      ...requestTimeout > 0 && {
        // Node swaps the two timeouts when the headers' is the longer (60 s by default).
        headersTimeout: requestTimeout,
        // Node enforces the timeouts when it checks its connections, every 30 s by default.
        connectionsCheckingInterval: Math.min(1000, requestTimeout)
      }
    }
  })

  // A client may half-close its side once its request is sent (`printf ... | nc`, some health
  // checkers). Node's default then drops the requests still running, unanswered: on PostgreSQL
  // that is any request past authentication, and /ready. Allowed half-open, Node answers them
  // and closes the connection after the last answer. (An old Node property, undocumented.)
  Object.assign(app.server, { httpAllowHalfOpen: true })
  // The users routes send a request's `100 Continue` once it has passed its checks.
  holdContinue(app.server)
  serveUnmetExpectations(app.server)
  app.server.on('connect', answerConnect.bind(app))

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
    // RFC 9112, 3.2: a server must answer 400 to an HTTP/1.1 request without a Host header.
    if (request.headers.host === undefined && request.raw.httpVersion === '1.1') throw new HttpProblem(400, 'bad_request', MESSAGES.badRequest)
    // Any other expectation than 100-continue: the 417 Node would send, in the contract's shape.
    if (unmetExpectation(request.raw)) throw new HttpProblem(417, 'expectation_failed', MESSAGES.expectationFailed)
  })
  // Node closes the connections that are idle when the server stops, but not those that become
  // idle after: a keep-alive client whose request was in flight would hold the stop for the 72 s
  // keep-alive timeout. So, once stopping, each answer sent closes the connections left idle (its
  // own among them, its answer out whole; not one with another request under way).
  let stopping = false
  app.addHook('preClose', async () => { stopping = true })
  app.addHook('onResponse', async (request, reply) => {
    request.log.info({ req: request, res: { statusCode: reply.statusCode }, responseTime: reply.elapsedTime }, 'request completed')
    if (stopping) app.server.closeIdleConnections()
  })
  // A client that hangs up before its answer gets no onResponse: its one line is this one.
  app.addHook('onRequestAbort', async (request) => {
    request.log.info({ req: request }, 'request aborted by the client')
  })
  app.setErrorHandler(sendProblem)
  // No route at this level takes a body (the users plugin brings its own parser), so none is
  // parsed here: an unknown route or method is a 404 whatever its body, never a 400, 413 or 415
  // from Fastify's default parsers. Node discards the unread body after the answer.
  app.removeAllContentTypeParsers()
  app.setNotFoundHandler((_request, reply) => reply.code(404).send({ message: MESSAGES.notFound, code: 'not_found' }))

  if (options.docs !== false) await registerOpenApi(app)
  if (options.metrics !== false) registerMetrics(app, options.metrics ?? {})

  app.get('/health', {
    schema: { operationId: 'health', summary: 'Liveness', tags: ['service'], response: { 200: HealthBody } }
  }, async () => ({ status: 'ok' }))
  app.get('/ready', {
    schema: { operationId: 'ready', summary: 'Readiness: the database answers', tags: ['service'], response: { 200: HealthBody, 503: unavailableResponse } }
  }, async () => {
    try {
      await options.service.ping()
    } catch {
      throw unavailable()
    }
    return { status: 'ready' }
  })

  const { service, rateLimitPerMinute, authFailuresPerMinute, rateCounter } = options
  await app.register(usersHttpPlugin, { service, rateLimitPerMinute, authFailuresPerMinute, rateCounter })
  return app
}

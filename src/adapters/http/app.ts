import { randomUUID } from 'node:crypto'
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { sendProblem } from './error-handler.js'
import { FIELD_MESSAGES } from '../../domain/profile-rules.js'
import { HttpProblem, invalidRequest, MESSAGES } from './problems.js'
import { registerMetrics, type MetricsOptions } from './metrics.js'
import { registerOpenApi } from './openapi.js'
import { HealthBody, errorResponse } from './schemas.js'
import { usersHttpPlugin, type UsersHttpService } from './users-plugin.js'

export interface HttpAppOptions {
  service: UsersHttpService & { ping(): Promise<void> }
  /** Requests per minute per API key; 0 turns limiting off (default 6000). */
  rateLimitPerMinute?: number
  /** Failed authentications per minute per client IP (default 60). */
  authFailuresPerMinute?: number
  /** Prometheus metrics at /metrics (default on); `false` turns them off. */
  metrics?: false | MetricsOptions
  /** OpenAPI at /openapi.json and the docs page at /docs (default on). */
  docs?: boolean
  /** Pino options, `false` for silence; see `loggerOptions`. */
  logger?: FastifyServerOptions['logger']
  loggerInstance?: FastifyServerOptions['loggerInstance']
}

const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

const FRAMEWORK_PROBLEMS: Record<string, () => HttpProblem> = {
  FST_ERR_BAD_URL: () => new HttpProblem(400, 'invalid_url', MESSAGES.invalidUrl),
  // Only /users/:user_id has a parameter, and 3072 characters exceed any valid encoded user_id.
  FST_ERR_MAX_PARAM_LENGTH: () => invalidRequest([{ path: '/path/user_id', message: FIELD_MESSAGES.userId }])
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
  const app = Fastify({
    logger: options.loggerInstance === undefined ? options.logger ?? false : undefined,
    loggerInstance: options.loggerInstance,
    // A user_id may be 255 characters, percent-encoded up to 12 bytes each.
    routerOptions: { maxParamLength: 3072 },
    bodyLimit: 64 * 1024,
    requestIdHeader: false,
    // One line per request, written when it completes (see the onResponse hook), not two.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: (req) => {
      const sent = req.headers['x-request-id']
      return typeof sent === 'string' && CLIENT_REQUEST_ID.test(sent) ? sent : randomUUID()
    },
    // Raised before routing, so before the hooks: the request id is set here too.
    frameworkErrors: (error, request, reply) => {
      reply.header('x-request-id', request.id)
      sendProblem(FRAMEWORK_PROBLEMS[error.code]?.() ?? error, request, reply)
    }
  })

  app.addHook('onRequest', async (request, reply) => { reply.header('x-request-id', request.id) })
  app.addHook('onResponse', async (request, reply) => {
    request.log.info({ req: request, res: { statusCode: reply.statusCode }, responseTime: reply.elapsedTime }, 'request completed')
  })
  app.setErrorHandler(sendProblem)
  app.setNotFoundHandler((_request, reply) => reply.code(404).send({ message: MESSAGES.notFound, code: 'not_found' }))

  if (options.docs !== false) await registerOpenApi(app)
  if (options.metrics !== false) registerMetrics(app, options.metrics ?? {})

  app.get('/health', {
    schema: { operationId: 'health', summary: 'Liveness', tags: ['service'], response: { 200: HealthBody } }
  }, async () => ({ status: 'ok' }))
  app.get('/ready', {
    schema: { operationId: 'ready', summary: 'Readiness: the database answers', tags: ['service'], response: { 200: HealthBody, 503: errorResponse('The database is unavailable.', { message: MESSAGES.unavailable, code: 'unavailable' }) } }
  }, async () => {
    try {
      await options.service.ping()
    } catch {
      throw new HttpProblem(503, 'unavailable', MESSAGES.unavailable)
    }
    return { status: 'ready' }
  })

  await app.register(usersHttpPlugin, { service: options.service, rateLimitPerMinute: options.rateLimitPerMinute, authFailuresPerMinute: options.authFailuresPerMinute })
  return app
}

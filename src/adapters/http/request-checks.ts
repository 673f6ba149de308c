import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { RateCounter, UserSnapshot } from '../../application/ports.js'
import type { UsersService } from '../../users-service.js'
import { sendContinue } from './expect-continue.js'
import { overTheLimit, refusedBody } from './json-body.js'
import { HttpProblem, unauthorized } from './problems.js'
import { occurrences } from './raw-headers.js'
import { sharedRateLimitStore } from './rate-limit-store.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The app of the request's API key, set by the authentication hook. */
    appId: string
    /** The id of the request's API key: the scope of its idempotency keys. */
    keyId: string
    /** The user named in the path, read with the API key (see `authenticate`). */
    userSnapshot: UserSnapshot | undefined
  }
}

export interface RequestCheckOptions {
  service: Pick<UsersService, 'authenticate'>
  /** Requests per minute per API key; 0 turns limiting off (default 6000). */
  rateLimitPerMinute?: number
  /** Failed authentications per minute per client IP (default 60). */
  authFailuresPerMinute?: number
  /**
   * Where the rate limits count: in this process (the default), or in a counter shared by every
   * process, such as the service's `rateCounter` (RATE_LIMIT_STORE=database).
   */
  rateCounter?: RateCounter
}

const BEARER = /^bearer +([\x21-\x7e]+) *$/i

/**
 * What `fastify`'s routes check from a request's headers alone, before its body is read, in the
 * contract's order: the API key (401), then its rate limit (429), then the body's declared type
 * and coding (415, which comes before a 413); and only then is a `100 Continue` sent. The same read
 * as the key's fetches the user named in the path, which the route then needs not read again (an
 * update under an Idempotency-Key starts its transaction from it too; see updateUserProfile).
 */
export async function registerRequestChecks (fastify: FastifyInstance, options: RequestCheckOptions): Promise<void> {
  const { service } = options
  fastify.decorateRequest('appId', '')
  fastify.decorateRequest('keyId', '')
  fastify.decorateRequest('userSnapshot', undefined)

  // Counters are per process (in memory), unless a shared counter is given (see the README).
  const store = options.rateCounter === undefined ? undefined : sharedRateLimitStore(options.rateCounter)
  await fastify.register(rateLimit, { global: false, ...(store === undefined ? {} : { store }) })
  const perKey = options.rateLimitPerMinute ?? 6000
  const keyLimit = fastify.createRateLimit({ max: perKey, timeWindow: 60_000, keyGenerator: (request) => `key:${request.keyId}` })
  const failureLimit = fastify.createRateLimit({ max: options.authFailuresPerMinute ?? 60, timeWindow: 60_000, keyGenerator: (request) => `ip:${request.ip}` })

  async function limit (check: typeof keyLimit, request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const state = await check(request)
    if (state.isAllowed) return
    const headers = { 'ratelimit-limit': String(state.max), 'ratelimit-remaining': String(state.remaining), 'ratelimit-reset': String(state.ttlInSeconds) }
    if (state.isExceeded) {
      throw new HttpProblem(429, 'rate_limited', 'Too many requests. Retry after the number of seconds in Retry-After.', { ...headers, 'retry-after': String(state.ttlInSeconds) })
    }
    reply.headers(headers)
  }

  fastify.addHook('onRequest', async (request, reply) => {
    // Node keeps the first of two Authorization fields, where a proxy may have checked the last:
    // a request that names two keys is refused, as a malformed one.
    const key = occurrences(request.raw.rawHeaders, 'authorization') > 1 ? undefined : BEARER.exec(request.headers.authorization ?? '')?.[1]
    const found = key === undefined ? undefined : await service.authenticate(key, (request.params as { user_id?: string }).user_id)
    if (found === undefined) {
      await limit(failureLimit, request, reply)
      throw unauthorized()
    }
    request.appId = found.appId
    request.keyId = found.keyId
    request.userSnapshot = found.snapshot
    if (perKey > 0) await limit(keyLimit, request, reply)
    const refused = refusedBody(request)
    if (refused !== undefined) throw refused
    // A client that sent `Expect: 100-continue` waits for this before it sends its body (see
    // holdContinue); a body over the limit is refused without it.
    if (!overTheLimit(request)) sendContinue(request.raw, reply.raw)
  })
}

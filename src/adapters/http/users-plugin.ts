import { createHash } from 'node:crypto'
import rateLimit from '@fastify/rate-limit'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { PreconditionFailedError, UsersError, type FieldError } from '../../domain/errors.js'
import { ifMatchAllows, ifNoneMatchAllows, parseIfMatch, parseIfNoneMatch, type IfMatch, type IfNoneMatch } from '../../domain/if-match.js'
import type { UserProfile } from '../../domain/user.js'
import type { RateCounter, StoredResponse, UnitOfWork, UserSnapshot } from '../../application/ports.js'
import { IF_MATCH_MESSAGE } from '../../application/update-user-profile.js'
import type { UsersService } from '../../users-service.js'
import { sendProblem } from './error-handler.js'
import { sendContinue } from './expect-continue.js'
import { overTheLimit, refusedBody, registerJsonBody, textErrorsOf } from './json-body.js'
import { HttpProblem, invalidRequest, problemBody, toProblem, unauthorized } from './problems.js'
import { sharedRateLimitStore } from './rate-limit-store.js'
import { CREATE_RESPONSES, GET_RESPONSES, READ_RESPONSES, UPDATE_RESPONSES } from './responses.js'
import { CreateUserBody, EmptyBody, IdempotencyHeaders, NoQuery, ReadHeaders, UpdateHeaders, UpdateUserBody, UserParams } from './schemas.js'
import { validationProblem, validatorCompiler } from './validation.js'

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

export type UsersHttpService = Pick<UsersService, 'authenticate' | 'createUser' | 'getUser' | 'updateUserProfile' | 'idempotent'>

export interface UsersHttpOptions {
  service: UsersHttpService
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
const IDEMPOTENCY_KEY = /^[\x20-\x7e]{1,255}$/

const SECURITY = [{ apiKey: [] }]

/** How many times the request carries the field `name` (lower case), from Node's `rawHeaders`. */
function occurrences (rawHeaders: string[], name: string): number {
  let count = 0
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const field = rawHeaders[i] as string
    if (field.length === name.length && field.toLowerCase() === name) count++
  }
  return count
}

function userResource (message: string, user: UserProfile) {
  return {
    message,
    klaim_id: user.klaimId,
    user_id: user.userId,
    email: user.email,
    name: user.name,
    metadata: user.metadata,
    credit_balance: user.creditBalance,
    acquisition_source: user.acquisitionSource,
    created_at: user.createdAt,
    updated_at: user.updatedAt
  }
}

/** Object keys sorted at every depth, so `{"a":1,"b":2}` and `{"b":2,"a":1}` are the same request. */
function canonical (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical)
  if (typeof value !== 'object' || value === null) return value
  return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical((value as Record<string, unknown>)[k])]))
}

/** "The same request": same method, decoded path, If-Match (and If-None-Match, when sent) and body (keys sorted). */
export function requestFingerprint (method: string, path: string, ifMatch: string | undefined, body: unknown, ifNoneMatch?: string): string {
  const parts = [method, path, ifMatch ?? null, canonical(body ?? null)]
  // Only when sent, so that every other request keeps the fingerprint it was stored under.
  if (ifNoneMatch !== undefined) parts.push(ifNoneMatch)
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex')
}

/** Answers worth replaying: what the client sent decided them, and nothing was changed. */
function storedFailure (error: unknown): StoredResponse | undefined {
  if (!(error instanceof UsersError)) return undefined
  const problem = toProblem(error)
  return problem.statusCode >= 500 ? undefined : { status: problem.statusCode, body: JSON.stringify(problemBody(problem)), headers: {} }
}

/**
 * On every response that carries a user: a cache may keep it for the one client that asked
 * (never a shared cache: it answers an API key), but must ask again before each use, which the
 * ETag makes a 304 while the user is unchanged.
 */
const USER_CACHE_CONTROL = 'private, no-cache'

function sendStored (reply: FastifyReply, response: StoredResponse, replayed: boolean): FastifyReply {
  if (replayed) reply.header('idempotent-replayed', 'true')
  if (response.headers.etag !== undefined) reply.header('cache-control', USER_CACHE_CONTROL)
  return reply.code(response.status).headers(response.headers).type('application/json; charset=utf-8').send(response.body)
}

/**
 * The `/users` routes as an encapsulated Fastify plugin: its own JSON parsing, validation, rate
 * limits and error handling, so a host can mount it in its own instance (raise the host's
 * `maxParamLength` to 3072 so long user ids reach the routes).
 */
export const usersHttpPlugin: FastifyPluginAsync<UsersHttpOptions> = async (instance, options) => {
  const { service } = options
  const fastify = instance.withTypeProvider<TypeBoxTypeProvider>()
  fastify.setValidatorCompiler(validatorCompiler)
  fastify.setErrorHandler(sendProblem)
  registerJsonBody(fastify)
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

  // onRequest: the key is checked before the body is read, so a 401 comes before 415 and 413;
  // the per-key limit right after it, so a 429 does too; then the body's declared type and
  // coding, so a 415 comes before 413; and only then is a `100 Continue` sent. The same read
  // fetches the user named in the path, which the route then needs not read again (an update
  // under an Idempotency-Key starts its transaction from it too; see updateUserProfile).
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

  // An update's `If-None-Match`; a create makes a new user whatever it says, and ignores it.
  const updateIfNoneMatch = (request: FastifyRequest): string | undefined =>
    request.method === 'POST' ? undefined : request.headers['if-none-match']

  /**
   * Fastify checks params, then body, then headers; the contract wants the headers before the
   * body, and the errors only the body's text shows (see textErrors) with its other errors. A
   * route's query (NoQuery on every route with a body; a GET has no query schema, so that a
   * client's cache-buster does not break a read) is a part of its own, between the path and the
   * headers, as in the request. `headers` names the route's headers: a read takes no
   * `Idempotency-Key`, and a create ignores `If-None-Match`.
   */
  function pathThenHeaders (headers: { ifNoneMatch: boolean, idempotencyKey: boolean }) {
    return async (request: FastifyRequest): Promise<void> => {
      const checkParams = request.getValidationFunction('params')
      if (checkParams !== undefined && !checkParams(request.params)) throw validationProblem('params', checkParams.errors ?? [])
      const checkQuery = request.getValidationFunction('querystring')
      if (checkQuery !== undefined && !checkQuery(request.query)) throw validationProblem('querystring', checkQuery.errors ?? [])
      const errors: FieldError[] = []
      const ifMatch = request.headers['if-match']
      if (ifMatch !== undefined && parseIfMatch(ifMatch) === undefined) errors.push({ path: '/header/if-match', message: IF_MATCH_MESSAGE })
      const ifNoneMatch = headers.ifNoneMatch ? request.headers['if-none-match'] : undefined
      if (ifNoneMatch !== undefined && parseIfNoneMatch(ifNoneMatch) === undefined) {
        errors.push({ path: '/header/if-none-match', message: IF_MATCH_MESSAGE })
      }
      const idempotencyKey = headers.idempotencyKey ? request.headers['idempotency-key'] : undefined
      if (idempotencyKey !== undefined) {
        if (!(typeof idempotencyKey === 'string' && IDEMPOTENCY_KEY.test(idempotencyKey))) {
          errors.push({ path: '/header/idempotency-key', message: 'must be 1 to 255 printable ASCII characters' })
        } else if (occurrences(request.raw.rawHeaders, 'idempotency-key') > 1) {
          // Node has joined the fields into one value ("a1, b1"), which would pass for a key.
          errors.push({ path: '/header/idempotency-key', message: 'must be sent once' })
        }
      }
      if (errors.length > 0) throw invalidRequest(errors)
      const inText = textErrorsOf(request)
      if (inText !== undefined) {
        const checkBody = request.getValidationFunction('body')
        const schemaErrors = checkBody === undefined || checkBody(request.body) ? [] : checkBody.errors ?? []
        throw validationProblem('body', schemaErrors, request.body, inText)
      }
    }
  }

  /** Runs a write, under its Idempotency-Key when the request has one. */
  async function write (request: FastifyRequest, reply: FastifyReply, path: string, work: (uow?: UnitOfWork) => Promise<StoredResponse>): Promise<FastifyReply> {
    const key = request.headers['idempotency-key']
    if (typeof key !== 'string') return sendStored(reply, await work(), false)
    const fingerprint = requestFingerprint(request.method, path, request.headers['if-match'], request.body, updateIfNoneMatch(request))
    const { response, replayed } = await service.idempotent({ scope: request.keyId, key, fingerprint }, work, storedFailure)
    return sendStored(reply, response, replayed)
  }

  fastify.post('/users', {
    schema: {
      operationId: 'createUser',
      summary: 'Create a user',
      description: 'Creates a user of the caller\'s app. `user_id` defaults to the generated `klaim_id`; `metadata` is applied as a merge patch onto `{}`. Query parameters are refused (400).',
      tags: ['users'],
      security: SECURITY,
      querystring: NoQuery,
      headers: IdempotencyHeaders,
      body: CreateUserBody,
      response: CREATE_RESPONSES
    },
    preValidation: pathThenHeaders({ ifNoneMatch: false, idempotencyKey: true })
  }, async (request, reply) => {
    const { user_id: snake, userId: camel, ...fields } = request.body
    if (snake !== undefined && camel !== undefined && snake !== camel) {
      throw invalidRequest([{ path: '/userId', message: 'must equal user_id when both are sent' }])
    }
    return await write(request, reply, '/users', async (uow) => {
      const user = await service.createUser({ appId: request.appId, ...fields, userId: snake ?? camel }, uow)
      const location = `${fastify.prefix}/users/${encodeURIComponent(user.userId)}`
      return { status: 201, body: JSON.stringify(userResource('resource created successfully', user)), headers: { etag: user.etag, location } }
    })
  })

  /**
   * A read, under the conditions of RFC 9110 §13.2.2 (checked well-formed by pathThenHeaders):
   * `If-Match` first, whose failure is a 412 as for an update; then `If-None-Match`, whose match is
   * a 304 (no body) to a GET or HEAD, and a 412 to the POST alias, as to any other method.
   */
  async function read (request: FastifyRequest, reply: FastifyReply, body: unknown, userId: string): Promise<FastifyReply> {
    // A missing body is fine; a JSON `null` body is not `{}`.
    if (body === null) throw validationProblem('body', [{ instancePath: '', keyword: 'type', schemaPath: '', params: {} }])
    const user = await service.getUser({ appId: request.appId, userId, snapshot: request.userSnapshot })
    const { 'if-match': ifMatch, 'if-none-match': ifNoneMatch } = request.headers
    if (ifMatch !== undefined && !ifMatchAllows(parseIfMatch(ifMatch) as IfMatch, user.etag)) throw new PreconditionFailedError()
    const modified = ifNoneMatch === undefined || ifNoneMatchAllows(parseIfNoneMatch(ifNoneMatch) as IfNoneMatch, user.etag)
    if (!modified && request.method === 'POST') throw new PreconditionFailedError('ifNoneMatch')
    reply.header('etag', user.etag).header('cache-control', USER_CACHE_CONTROL)
    return modified
      ? reply.send(userResource('fetch resource successfully', user))
      : reply.code(304).type('application/json; charset=utf-8').send()
  }
  const readSchema = { tags: ['users'], security: SECURITY, params: UserParams, headers: ReadHeaders, response: READ_RESPONSES }
  const readPreValidation = pathThenHeaders({ ifNoneMatch: true, idempotencyKey: false })
  fastify.get('/users/:user_id', {
    schema: { ...readSchema, response: GET_RESPONSES, operationId: 'getUser', summary: 'Read a user', description: 'Query parameters are ignored (a cache-buster does not break the read).' },
    preValidation: readPreValidation
  }, async (request, reply) =>
    await read(request, reply, undefined, request.params.user_id))
  fastify.post('/users/:user_id', {
    schema: { ...readSchema, operationId: 'getUserByPost', summary: 'Read a user (POST alias)', description: 'The same as GET, as the Klaim docs list the read; the body must be absent, empty (zero bytes) or `{}`. Unlike GET, it refuses query parameters (400).', querystring: NoQuery, body: EmptyBody },
    preValidation: readPreValidation
  }, async (request, reply) =>
    await read(request, reply, request.body, request.params.user_id))

  fastify.route({
    method: ['PUT', 'PATCH'],
    url: '/users/:user_id',
    schema: {
      operationId: 'updateUserProfile',
      summary: 'Update User Profile',
      description: 'Changes any of `name`, `email`, `user_id` (a rename) and `metadata` (a JSON Merge Patch, RFC 7396) together or not at all. `{}` changes nothing. PATCH behaves identically. Query parameters are refused (400).',
      tags: ['users'],
      security: SECURITY,
      consumes: ['application/json', 'application/merge-patch+json'],
      params: UserParams,
      querystring: NoQuery,
      headers: UpdateHeaders,
      body: UpdateUserBody,
      response: UPDATE_RESPONSES
    },
    preValidation: pathThenHeaders({ ifNoneMatch: true, idempotencyKey: true }),
    handler: async (request, reply) => {
      const { user_id: newUserId, ...changes } = request.body
      return await write(request, reply, `/users/${request.params.user_id}`, async (uow) => {
        const user = await service.updateUserProfile({
          appId: request.appId,
          userId: request.params.user_id,
          changes: newUserId === undefined ? changes : { ...changes, userId: newUserId },
          ifMatch: request.headers['if-match'],
          ifNoneMatch: request.headers['if-none-match'],
          snapshot: request.userSnapshot
        }, uow)
        return { status: 200, body: JSON.stringify(userResource('fetch resource successfully', user)), headers: { etag: user.etag } }
      })
    }
  })
}

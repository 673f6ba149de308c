import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { isUnknownApp } from '../../application/apps.js'
import { PreconditionFailedError } from '../../domain/errors.js'
import { ifMatchAllows, ifNoneMatchAllows, parseIfMatch, parseIfNoneMatch, type IfMatch, type IfNoneMatch } from '../../domain/if-match.js'
import type { UsersService } from '../../users-service.js'
import { sendProblem } from './error-handler.js'
import { idempotentWrites } from './idempotent-writes.js'
import { registerJsonBody } from './json-body.js'
import { invalidRequest, unauthorized } from './problems.js'
import { registerRequestChecks, type RequestCheckOptions } from './request-checks.js'
import { CREATE_RESPONSES, GET_RESPONSES, READ_RESPONSES, UPDATE_RESPONSES, USER_CACHE_CONTROL, userResource } from './responses.js'
import { CreateUserBody, EmptyBody, IdempotencyHeaders, NoQuery, ReadHeaders, UpdateHeaders, UpdateUserBody, UserParams } from './schemas.js'
import { pathThenHeaders, validationProblem, validatorCompiler } from './validation.js'

export type UsersHttpService = Pick<UsersService, 'authenticate' | 'createUser' | 'getUser' | 'updateUserProfile' | 'idempotent'>

export interface UsersHttpOptions extends RequestCheckOptions {
  service: UsersHttpService
}

const SECURITY = [{ apiKey: [] }]

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
  await registerRequestChecks(fastify, options)
  const write = idempotentWrites(service)

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
      const user = await service.createUser({ appId: request.appId, ...fields, userId: snake ?? camel }, uow).catch((error: unknown) => {
        // The key's app was deleted since the key was checked (`apps delete`): the key is no more.
        throw isUnknownApp(error) ? unauthorized() : error
      })
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

import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { ValidationError } from '../../domain/errors.js'
import { parseIfMatch } from '../../domain/if-match.js'
import type { UserProfile } from '../../domain/user.js'
import { IF_MATCH_MESSAGE } from '../../application/update-user-profile.js'
import type { UsersService } from '../../users-service.js'
import { sendProblem } from './error-handler.js'
import { registerJsonBody } from './json-body.js'
import { HttpProblem, unauthorized } from './problems.js'
import { CreateUserBody, EmptyBody, ErrorBody, IfMatchHeaders, UpdateUserBody, UserParams, UserResource } from './schemas.js'
import { validationProblem, validatorCompiler } from './validation.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The app of the request's API key, set by the authentication hook. */
    appId: string
  }
}

export type UsersHttpService = Pick<UsersService, 'authenticate' | 'createUser' | 'getUser' | 'updateUserProfile'>

export interface UsersHttpOptions {
  service: UsersHttpService
}

const BEARER = /^bearer +([\x21-\x7e]+) *$/i

const ERROR_RESPONSES = {
  400: ErrorBody, 401: ErrorBody, 404: ErrorBody, 409: ErrorBody, 413: ErrorBody, 415: ErrorBody, 503: ErrorBody
}

function sendUser (reply: FastifyReply, status: 200 | 201, message: string, user: UserProfile): FastifyReply {
  return reply.code(status).header('etag', user.etag).send({
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
  })
}

/**
 * The `/users` routes as an encapsulated Fastify plugin: its own JSON parsing, validation and
 * error handling, so a host can mount it in its own instance (raise the host's `maxParamLength`
 * to 3072 so long user ids reach the routes).
 */
export const usersHttpPlugin: FastifyPluginAsync<UsersHttpOptions> = async (instance, { service }) => {
  const fastify = instance.withTypeProvider<TypeBoxTypeProvider>()
  fastify.setValidatorCompiler(validatorCompiler)
  fastify.setErrorHandler(sendProblem)
  registerJsonBody(fastify)
  fastify.decorateRequest('appId', '')

  // onRequest: the key is checked before the body is read, so a 401 comes before 415 and 413.
  fastify.addHook('onRequest', async (request) => {
    const key = BEARER.exec(request.headers.authorization ?? '')?.[1]
    const appId = key === undefined ? undefined : await service.authenticate(key)
    if (appId === undefined) throw unauthorized()
    request.appId = appId
  })

  // Fastify checks params, then body, then headers; the contract wants the headers before the body.
  async function pathThenIfMatch (request: FastifyRequest): Promise<void> {
    const checkParams = request.getValidationFunction('params')
    if (checkParams !== undefined && !checkParams(request.params)) throw validationProblem('params', checkParams.errors ?? [])
    const ifMatch = request.headers['if-match']
    if (ifMatch !== undefined && parseIfMatch(ifMatch) === undefined) {
      throw new HttpProblem(400, 'validation_failed', new ValidationError([]).message, {}, [{ path: '/header/if-match', message: IF_MATCH_MESSAGE }])
    }
  }

  fastify.post('/users', {
    schema: { body: CreateUserBody, response: { 201: UserResource, ...ERROR_RESPONSES } }
  }, async (request, reply) => {
    const { user_id: snake, userId: camel, ...fields } = request.body
    if (snake !== undefined && camel !== undefined && snake !== camel) {
      throw new HttpProblem(400, 'validation_failed', new ValidationError([]).message, {}, [{ path: '/userId', message: 'must equal user_id when both are sent' }])
    }
    const user = await service.createUser({ appId: request.appId, ...fields, userId: snake ?? camel })
    reply.header('location', `${fastify.prefix}/users/${encodeURIComponent(user.userId)}`)
    return sendUser(reply, 201, 'resource created successfully', user)
  })

  async function read (appId: string, body: unknown, userId: string): Promise<UserProfile> {
    // A missing body is fine; a JSON `null` body is not `{}`.
    if (body === null) throw validationProblem('body', [{ instancePath: '', keyword: 'type', schemaPath: '', params: {} }])
    return await service.getUser({ appId, userId })
  }
  fastify.get('/users/:user_id', { schema: { params: UserParams, response: { 200: UserResource, ...ERROR_RESPONSES } } }, async (request, reply) =>
    sendUser(reply, 200, 'fetch resource successfully', await read(request.appId, undefined, request.params.user_id)))
  fastify.post('/users/:user_id', { schema: { params: UserParams, body: EmptyBody, response: { 200: UserResource, ...ERROR_RESPONSES } } }, async (request, reply) =>
    sendUser(reply, 200, 'fetch resource successfully', await read(request.appId, request.body, request.params.user_id)))

  fastify.route({
    method: ['PUT', 'PATCH'],
    url: '/users/:user_id',
    schema: { params: UserParams, headers: IfMatchHeaders, body: UpdateUserBody, response: { 200: UserResource, ...ERROR_RESPONSES, 412: ErrorBody } },
    preValidation: pathThenIfMatch,
    handler: async (request, reply) => {
      const { user_id: newUserId, ...changes } = request.body
      const user = await service.updateUserProfile({
        appId: request.appId,
        userId: request.params.user_id,
        changes: newUserId === undefined ? changes : { ...changes, userId: newUserId },
        ifMatch: request.headers['if-match']
      })
      return sendUser(reply, 200, 'fetch resource successfully', user)
    }
  })
}

import { createHash } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { StoredResponse, UnitOfWork } from '../../application/ports.js'
import { UsersError } from '../../domain/errors.js'
import type { UsersService } from '../../users-service.js'
import { problemBody, toProblem } from './problems.js'
import { USER_CACHE_CONTROL } from './responses.js'

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

function sendStored (reply: FastifyReply, response: StoredResponse, replayed: boolean): FastifyReply {
  if (replayed) reply.header('idempotent-replayed', 'true')
  if (response.headers.etag !== undefined) reply.header('cache-control', USER_CACHE_CONTROL)
  return reply.code(response.status).headers(response.headers).type('application/json; charset=utf-8').send(response.body)
}

/**
 * How the write routes answer: `work` makes the change and its response, and runs under the
 * request's `Idempotency-Key` when it has one (see `idempotent`), its response stored and
 * replayed to a retry. `path` is the request's decoded path, part of its fingerprint.
 */
export function idempotentWrites (service: Pick<UsersService, 'idempotent'>) {
  return async function write (request: FastifyRequest, reply: FastifyReply, path: string, work: (uow?: UnitOfWork) => Promise<StoredResponse>): Promise<FastifyReply> {
    const key = request.headers['idempotency-key']
    if (typeof key !== 'string') return sendStored(reply, await work(), false)
    // An update's `If-None-Match`; a create makes a new user whatever it says, and ignores it.
    const ifNoneMatch = request.method === 'POST' ? undefined : request.headers['if-none-match']
    const fingerprint = requestFingerprint(request.method, path, request.headers['if-match'], request.body, ifNoneMatch)
    const { response, replayed } = await service.idempotent({ scope: request.keyId, key, fingerprint }, work, storedFailure)
    return sendStored(reply, response, replayed)
  }
}

import type { FastifyError } from 'fastify'
import { INVALID_REQUEST, UsersError, type DomainErrorCode, type FieldError } from '../../domain/errors.js'
import { isUnavailable } from '../persistence/database-errors.js'

/** An error answered as is: status, stable code, message, and any headers it needs. */
export class HttpProblem extends Error {
  constructor (
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
    readonly errors?: FieldError[]
  ) {
    super(message)
    this.name = 'HttpProblem'
  }
}

/** One table from domain error code to status: a new domain error without a status does not compile. */
export const DOMAIN_STATUS: { readonly [C in DomainErrorCode]: number } = {
  validation_failed: 400,
  user_not_found: 404,
  user_id_taken: 409,
  email_taken: 409,
  precondition_failed: 412,
  idempotency_key_reused: 422,
  idempotency_in_progress: 409
}

export const MESSAGES = {
  unauthorized: 'Missing or invalid API key.',
  invalidJson: 'The request body is not valid JSON.',
  payloadTooLarge: 'The request body is larger than 65536 bytes.',
  unsupportedMediaType: 'The request body must be application/json (or application/merge-patch+json on PUT and PATCH).',
  compressedBody: 'The request body must not be compressed: Content-Encoding is not supported.',
  contentTypeTwice: 'The request must name one Content-Type: it was sent more than once.',
  notFound: 'There is no such route.',
  unavailable: 'The database is unavailable. Try again shortly.',
  invalidUrl: 'The URL is not valid.',
  badRequest: 'The request is malformed.',
  headersTooLarge: 'The request headers are larger than 16384 bytes.',
  requestTimeout: 'The request was not received in time.',
  expectationFailed: 'The request expects what this service does not do: Expect may only be 100-continue.',
  internal: 'Internal server error'
} as const

/** A 400 `validation_failed` listing the offending fields. */
export const invalidRequest = (errors: FieldError[], message: string = INVALID_REQUEST): HttpProblem =>
  new HttpProblem(400, 'validation_failed', message, {}, errors)

export const unauthorized = (): HttpProblem =>
  new HttpProblem(401, 'unauthorized', MESSAGES.unauthorized, { 'www-authenticate': 'Bearer' })

/**
 * The 503 while the database does not answer. The service recovers by itself as soon as it does,
 * so the answer says when to try again (`Retry-After`, RFC 9110 §10.2.3), as a 429 does.
 */
export const unavailable = (): HttpProblem =>
  new HttpProblem(503, 'unavailable', MESSAGES.unavailable, { 'retry-after': '1' })

/** Maps anything thrown while handling a request to the problem the client sees. */
export function toProblem (error: unknown): HttpProblem {
  if (error instanceof HttpProblem) return error
  if (error instanceof UsersError) {
    const { code } = error as UsersError & { code: DomainErrorCode }
    const errors = (error as { errors?: FieldError[] }).errors
    return new HttpProblem(DOMAIN_STATUS[code], code, error.message, {}, errors)
  }
  const fastifyError = error as Partial<FastifyError>
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': return new HttpProblem(415, 'unsupported_media_type', MESSAGES.unsupportedMediaType)
    case 'FST_ERR_CTP_BODY_TOO_LARGE': return new HttpProblem(413, 'payload_too_large', MESSAGES.payloadTooLarge)
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH': return new HttpProblem(400, 'bad_request', MESSAGES.badRequest)
  }
  // Fastify marks what went wrong with the request itself, such as a client that hung up while
  // sending its body (Node's "aborted", code ECONNRESET): not to be read as the database's fault.
  const status = fastifyError.statusCode
  if (typeof status === 'number' && status >= 400 && status < 500) return new HttpProblem(status, 'bad_request', MESSAGES.badRequest)
  if (isUnavailable(error)) return unavailable()
  return new HttpProblem(500, 'internal', MESSAGES.internal)
}

export function problemBody (problem: HttpProblem): { message: string, code: string, errors?: FieldError[] } {
  return problem.errors === undefined
    ? { message: problem.message, code: problem.code }
    : { message: problem.message, code: problem.code, errors: problem.errors }
}

import { Ajv, type ErrorObject } from 'ajv'
import type { FastifyRequest, FastifySchemaCompiler } from 'fastify'
import type { FieldError } from '../../domain/errors.js'
import { parseIfMatch, parseIfNoneMatch } from '../../domain/if-match.js'
import { checkMetadataPatch, isPlainObject, pointer } from '../../domain/metadata.js'
import { FIELD_MESSAGES, MISSING_REQUIRED_FIELDS } from '../../domain/profile-rules.js'
import { IF_MATCH_MESSAGE } from '../../application/update-user-profile.js'
import { textErrorsOf } from './json-body.js'
import { invalidRequest, type HttpProblem } from './problems.js'
import { occurrences } from './raw-headers.js'

// No coercion ({"name": 42} is a 400), nothing stripped (unknown fields are named), every error listed.
const ajv = new Ajv({ coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: true, strict: false })

export const validatorCompiler: FastifySchemaCompiler<unknown> = ({ schema }) => ajv.compile(schema as object)

export type RequestPart = 'params' | 'headers' | 'body' | 'querystring'
const PART_PREFIX: Record<RequestPart, string> = { params: '/path', headers: '/header', body: '', querystring: '/query' }
const QUERY_MESSAGE = 'is not accepted: this endpoint takes no query parameters (fields go in the JSON body)'

const MESSAGE_BY_FIELD: Record<string, string> = {
  email: FIELD_MESSAGES.email,
  name: FIELD_MESSAGES.name,
  user_id: FIELD_MESSAGES.userId,
  userId: FIELD_MESSAGES.userId,
  metadata: FIELD_MESSAGES.metadata
}

function toFieldError (part: RequestPart, error: ErrorObject): FieldError {
  const base = PART_PREFIX[part] + error.instancePath
  if (error.keyword === 'required') return { path: pointer(base, (error.params as { missingProperty: string }).missingProperty), message: FIELD_MESSAGES.required }
  if (error.keyword === 'additionalProperties') return { path: pointer(base, (error.params as { additionalProperty: string }).additionalProperty), message: part === 'querystring' ? QUERY_MESSAGE : FIELD_MESSAGES.unknown }
  if (error.instancePath === '' && part === 'body') return { path: '', message: FIELD_MESSAGES.object }
  const field = error.instancePath.split('/').pop() ?? ''
  return { path: base, message: MESSAGE_BY_FIELD[field] ?? `${error.message ?? 'is invalid'}` }
}

/**
 * Turns the schema errors of one part of a request into the contract's 400, with `alsoFound`,
 * what the caller found besides (a body's repeated names). For a body it also lists what only the
 * domain checks (metadata keys and values), so the client sees every offending field at once.
 */
export function validationProblem (part: RequestPart, errors: ErrorObject[], body?: unknown, alsoFound: FieldError[] = []): HttpProblem {
  const byPath = new Map<string, FieldError>()
  for (const error of errors) {
    const fieldError = toFieldError(part, error)
    if (!byPath.has(fieldError.path)) byPath.set(fieldError.path, fieldError)
  }
  for (const e of alsoFound) if (!byPath.has(e.path)) byPath.set(e.path, e)
  if (part === 'body' && isPlainObject(body) && isPlainObject(body.metadata) && !byPath.has('/metadata')) {
    const metadataErrors: FieldError[] = []
    checkMetadataPatch(body.metadata, '/metadata', metadataErrors)
    for (const e of metadataErrors) if (!byPath.has(e.path)) byPath.set(e.path, e)
  }
  const missing = errors.some((e) => e.keyword === 'required' && part === 'body')
  const listed = [...byPath.values()].slice(0, 100)
  return missing ? invalidRequest(listed, MISSING_REQUIRED_FIELDS) : invalidRequest(listed)
}

const IDEMPOTENCY_KEY = /^[\x20-\x7e]{1,255}$/

/**
 * A route's `preValidation`. Fastify checks params, then body, then headers; the contract wants
 * the headers before the body, and the errors only the body's text shows (see textErrors) with
 * its other errors. A route's query (NoQuery on every route with a body; a GET has no query
 * schema, so that a client's cache-buster does not break a read) is a part of its own, between
 * the path and the headers, as in the request. `headers` names the route's headers: a read takes
 * no `Idempotency-Key`, and a create ignores `If-None-Match`.
 */
export function pathThenHeaders (headers: { ifNoneMatch: boolean, idempotencyKey: boolean }) {
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

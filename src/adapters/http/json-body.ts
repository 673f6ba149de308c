import { isUtf8 } from 'node:buffer'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { FieldError } from '../../domain/errors.js'
import { isPlainObject } from '../../domain/metadata.js'
import { textErrors } from './json-text.js'
import { HttpProblem, MESSAGES } from './problems.js'
import { occurrences } from './raw-headers.js'

const JSON_TYPES = ['application/json', 'application/merge-patch+json']
export const BODY_LIMIT = 64 * 1024

const NOT_JSON = Symbol('not JSON')

/**
 * The problems found in a body read whole. Fastify closes the connection after any parser error,
 * as the client may still be sending its body; after these it has sent all of it, and the
 * connection can carry the client's next request (see `sendProblem`).
 */
const WHOLE_BODY_READ = new WeakSet<HttpProblem>()
const afterWholeBody = (problem: HttpProblem): HttpProblem => {
  WHOLE_BODY_READ.add(problem)
  return problem
}
export const foundInWholeBody = (error: unknown): boolean => error instanceof HttpProblem && WHOLE_BODY_READ.has(error)

function parseJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return NOT_JSON
  }
}

function charsetOk (contentType: string): boolean {
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType)?.[1]
  return charset === undefined || /^utf-?8$/i.test(charset)
}

/**
 * The 415 for a body whose declared type or coding the parser below would not take, found from
 * the headers alone, so before the body is read: the contract answers a refused content type
 * (415) before a body over the limit (413), which Fastify finds from `Content-Length` before any
 * parser runs. A body is refused when it is not UTF-8 JSON, when it is merge-patch JSON on a
 * method other than PUT and PATCH, when its type is sent twice, and when it is compressed (any
 * `Content-Encoding` but `identity`): it would otherwise be parsed as is, and read as invalid
 * JSON, or worse, as valid. Only for a request whose body Fastify parses: one with a body, or
 * with a `Content-Type`.
 */
export function refusedBody (request: FastifyRequest): HttpProblem | undefined {
  const { headers, method } = request
  const contentType = headers['content-type']
  if (method === 'GET' || method === 'HEAD') return undefined
  if (contentType === undefined && headers['transfer-encoding'] === undefined && (headers['content-length'] ?? '0') === '0') return undefined
  // Node keeps the first of two Content-Type fields, where a proxy may have read the last: the
  // body's type is then not known, as the key's is not with two Authorization fields.
  if (contentType !== undefined && occurrences(request.raw.rawHeaders, 'content-type') > 1) {
    return new HttpProblem(415, 'unsupported_media_type', MESSAGES.contentTypeTwice)
  }
  const encoding = headers['content-encoding']
  if (encoding !== undefined && !/^\s*identity\s*$/i.test(encoding)) return new HttpProblem(415, 'unsupported_media_type', MESSAGES.compressedBody)
  if (contentType === undefined) return undefined
  const mergePatch = /^application\/merge-patch\+json/i.test(contentType)
  if (!charsetOk(contentType) || (mergePatch && method !== 'PUT' && method !== 'PATCH')) {
    return new HttpProblem(415, 'unsupported_media_type', MESSAGES.unsupportedMediaType)
  }
  return undefined
}

/** Whether Fastify refuses the body from its `Content-Length` alone (413), before reading it. */
export const overTheLimit = (request: FastifyRequest): boolean => Number(request.headers['content-length']) > BODY_LIMIT

/** The errors found in a request's body text by the parser below (see `textErrors`), if it had any. */
const TEXT_ERRORS = new WeakMap<FastifyRequest, FieldError[]>()
export const textErrorsOf = (request: FastifyRequest): FieldError[] | undefined => TEXT_ERRORS.get(request)

/**
 * Parses JSON bodies with `JSON.parse` as is: keys like `__proto__` become plain own properties
 * (the domain then refuses them by name), where Fastify's default parser would reject the whole
 * body as malformed. What it refuses by type or coding is refused before (see `refusedBody`). A
 * body that is not valid UTF-8 is not JSON (RFC 8259): decoding it would silently store U+FFFD in
 * place of the bytes sent.
 */
export function registerJsonBody (fastify: FastifyInstance): void {
  fastify.removeAllContentTypeParsers()
  fastify.addContentTypeParser(JSON_TYPES, { parseAs: 'buffer', bodyLimit: BODY_LIMIT }, (request: FastifyRequest, body: Buffer, done) => {
    // Zero bytes of JSON are no body, as a client that always sends `Content-Type` sends them:
    // the route then answers as for a request without one (its schema checked after the path and
    // the headers, as the contract orders them), and the POST read alias reads.
    if (body.length === 0) {
      done(null, undefined)
      return
    }
    const text = isUtf8(body) ? body.toString('utf8') : undefined
    const parsed = text === undefined ? NOT_JSON : parseJson(text)
    if (parsed === NOT_JSON) {
      done(afterWholeBody(new HttpProblem(400, 'invalid_json', MESSAGES.invalidJson)), undefined)
      return
    }
    // Found here, refused with the body's other errors, once the path and headers have passed.
    if (isPlainObject(parsed)) {
      const errors = textErrors(text as string)
      if (errors.length > 0) TEXT_ERRORS.set(request, errors)
    }
    done(null, parsed)
  })
}

import { isUtf8 } from 'node:buffer'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { HttpProblem, invalidRequest, MESSAGES } from './problems.js'

const JSON_TYPES = ['application/json', 'application/merge-patch+json']
export const BODY_LIMIT = 64 * 1024

const NOT_JSON = Symbol('not JSON')

function parseJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return NOT_JSON
  }
}

function charsetOk (contentType: string | undefined): boolean {
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType ?? '')?.[1]
  return charset === undefined || /^utf-?8$/i.test(charset)
}

/**
 * Parses JSON bodies with `JSON.parse` as is: keys like `__proto__` become plain own properties
 * (the domain then refuses them by name), where Fastify's default parser would reject the whole
 * body as malformed. Merge-patch JSON is for PUT and PATCH only. A body that is not valid UTF-8
 * is not JSON (RFC 8259): decoding it would silently store U+FFFD in place of the bytes sent.
 */
export function registerJsonBody (fastify: FastifyInstance): void {
  fastify.removeAllContentTypeParsers()
  fastify.addContentTypeParser(JSON_TYPES, { parseAs: 'buffer', bodyLimit: BODY_LIMIT }, (request: FastifyRequest, body: Buffer, done) => {
    const contentType = request.headers['content-type']
    const mergePatch = /^application\/merge-patch\+json/i.test(contentType ?? '')
    if (!charsetOk(contentType) || (mergePatch && request.method !== 'PUT' && request.method !== 'PATCH')) {
      done(new HttpProblem(415, 'unsupported_media_type', MESSAGES.unsupportedMediaType), undefined)
      return
    }
    if (body.length === 0) {
      done(invalidRequest([{ path: '', message: 'must be a JSON object' }]), undefined)
      return
    }
    const parsed = isUtf8(body) ? parseJson(body.toString('utf8')) : NOT_JSON
    if (parsed === NOT_JSON) done(new HttpProblem(400, 'invalid_json', MESSAGES.invalidJson), undefined)
    else done(null, parsed)
  })
}

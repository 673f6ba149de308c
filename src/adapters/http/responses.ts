import { PRECONDITION_MESSAGES } from '../../domain/errors.js'
import type { UserProfile } from '../../domain/user.js'
import { Type } from '../../typebox.js'
import { errorResponse, notModifiedResponse, userResponse } from './schemas.js'

// Every status a /users route can answer, with the contract's messages as examples.
const invalid = errorResponse('The body, path or a header is invalid; `errors` names every offending field of the first failing part.',
  { message: 'The request is invalid.', code: 'validation_failed', errors: [{ path: '/email', message: 'must be an email address: 3 to 254 characters, one @ after a non-empty local part, a dot inside the domain, no white space or control characters' }] },
  { message: 'The request body is not valid JSON.', code: 'invalid_json' })

/** The error shape for a status that tells the client when to try again (`Retry-After`). */
const retryLater = (description: string, example: { message: string, code: string }, retryAfter: string) =>
  Type.Object(errorResponse('').properties, { description, examples: [example], headers: { 'retry-after': { type: 'string', description: retryAfter } } })

/** The 503 of /users routes and /ready. */
export const unavailableResponse = retryLater('The database is unavailable; the service recovers by itself once it answers.',
  { message: 'The database is unavailable. Try again shortly.', code: 'unavailable' }, 'Seconds to wait before retrying: 1.')

export const COMMON_RESPONSES = {
  400: invalid,
  401: errorResponse('Missing, malformed (or sent twice), unknown or revoked API key (with `WWW-Authenticate: Bearer`).', { message: 'Missing or invalid API key.', code: 'unauthorized' }),
  404: errorResponse('No user with that user_id in the caller\'s app.', { message: 'Can not find user with the given user_id.', code: 'user_not_found' }),
  413: errorResponse('The body is over 65536 bytes.', { message: 'The request body is larger than 65536 bytes.', code: 'payload_too_large' }),
  415: errorResponse('The body is not UTF-8 JSON (merge-patch JSON on PUT and PATCH only), its `Content-Type` is sent twice, or it is compressed.',
    { message: 'The request body must be application/json (or application/merge-patch+json on PUT and PATCH).', code: 'unsupported_media_type' },
    { message: 'The request must name one Content-Type: it was sent more than once.', code: 'unsupported_media_type' },
    { message: 'The request body must not be compressed: Content-Encoding is not supported.', code: 'unsupported_media_type' }),
  429: retryLater('Too many requests for this API key (or failed authentications from this IP).',
    { message: 'Too many requests. Retry after the number of seconds in Retry-After.', code: 'rate_limited' }, 'Seconds to wait before retrying.'),
  503: unavailableResponse
}

const conflict = errorResponse('The user_id or email belongs to another user of the app (user_id is reported first), or a request with this Idempotency-Key is still running.',
  { message: 'User ID already exists', code: 'user_id_taken' },
  { message: 'Email already exists', code: 'email_taken' },
  { message: 'A request with this Idempotency-Key is still in progress.', code: 'idempotency_in_progress' })

const reused = errorResponse('This Idempotency-Key was used with a different request.', { message: 'This Idempotency-Key was already used with a different request.', code: 'idempotency_key_reused' })

const { 404: _notFound, ...WITHOUT_404 } = COMMON_RESPONSES
const { 413: _tooLarge, 415: _mediaType, ...WITHOUT_BODY } = COMMON_RESPONSES

const MODIFIED = { message: PRECONDITION_MESSAGES.ifMatch, code: 'precondition_failed' }
const MATCHES = { message: PRECONDITION_MESSAGES.ifNoneMatch, code: 'precondition_failed' }

export const GET_RESPONSES = {
  200: userResponse('The user.'),
  304: notModifiedResponse,
  ...WITHOUT_BODY,
  412: errorResponse('`If-Match` matches no current ETag.', MODIFIED)
}
export const READ_RESPONSES = {
  200: userResponse('The user.'),
  ...COMMON_RESPONSES,
  412: errorResponse('`If-Match` matches no current ETag, or `If-None-Match` matches it (or is `*`).', MODIFIED, MATCHES)
}

export const CREATE_RESPONSES = {
  201: userResponse('Created. `Location` names the user; `ETag` is its version.', ['location', 'idempotent-replayed']),
  ...WITHOUT_404,
  400: errorResponse('`email` is missing (message "missing required fields"), or a field is invalid.',
    { message: 'missing required fields', code: 'validation_failed', errors: [{ path: '/email', message: 'is required' }] }),
  409: conflict,
  422: reused
}

export const UPDATE_RESPONSES = {
  200: userResponse('Updated, or nothing to change. `ETag` is the new version.', ['idempotent-replayed']),
  ...COMMON_RESPONSES,
  409: conflict,
  412: errorResponse('`If-Match` matches no current ETag, or `If-None-Match` matches it; nothing changed.', MODIFIED, MATCHES),
  422: reused
}

/** The user resource as the routes send it (`userResponse` is its schema). */
export function userResource (message: string, user: UserProfile) {
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

/**
 * On every response that carries a user: a cache may keep it for the one client that asked
 * (never a shared cache: it answers an API key), but must ask again before each use, which the
 * ETag makes a 304 while the user is unchanged.
 */
export const USER_CACHE_CONTROL = 'private, no-cache'

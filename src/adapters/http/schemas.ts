import { EMAIL_PATTERN, NAME_PATTERN, USER_ID_PATTERN } from '../../domain/profile-rules.js'
import { ACQUISITION_SOURCES } from '../../domain/user.js'
import { Type } from '../../typebox.js'

// Field schemas, defined once. The patterns are the domain's own, so both layers agree.
export const Email = Type.String({ pattern: EMAIL_PATTERN, description: 'Trimmed; 3 to 254 characters; unique per app, case-insensitively.', examples: ['ada@example.com'] })
export const Name = Type.Unsafe<string | null>({ type: ['string', 'null'], pattern: NAME_PATTERN, description: 'Trimmed; 1 to 200 characters, or null to clear.', examples: ['Ada'] })
const userIdSchema = (description: string) => Type.String({ pattern: USER_ID_PATTERN, description, examples: ['my-user-123'] })
export const UserId = userIdSchema("The app's own identifier: 1 to 255 characters, no control characters, no surrounding white space.")
export const Metadata = Type.Unsafe<Record<string, unknown> | null>({
  type: ['object', 'null'],
  description: 'A JSON Merge Patch (RFC 7396) applied to the stored metadata; null removes all metadata. Result limits: 50 top-level keys, keys of 1 to 40 characters, 5 levels, 8192 bytes. Numbers are kept as 64-bit floats: an integer beyond 2^53 that would come back changed (send it as a string), or a number other than 0 too small for a float, is a 400.',
  examples: [{ plan: 'pro' }]
})

export const UserParams = Type.Object({ user_id: UserId })

/** A route that takes a body takes no query parameters: a field sent in the URL is refused, not dropped. */
export const NoQuery = Type.Object({}, { additionalProperties: false })

export const UpdateUserBody = Type.Object({
  name: Type.Optional(Name),
  email: Type.Optional(Email),
  user_id: Type.Optional(UserId),
  metadata: Type.Optional(Metadata)
}, { additionalProperties: false })

export const CreateUserBody = Type.Object({
  email: Email,
  user_id: Type.Optional(UserId),
  userId: Type.Optional(userIdSchema('Alias of user_id, as the Klaim docs spell it; both at once must be equal.')),
  name: Type.Optional(Name),
  metadata: Type.Optional(Metadata)
}, { additionalProperties: false })

/** The read alias `POST /users/{user_id}` takes no body or `{}` (Fastify validates a missing body as null). */
export const EmptyBody = Type.Unsafe<Record<string, never> | null | undefined>({ type: ['object', 'null'], additionalProperties: false })

const IdempotencyKey = Type.Optional(Type.String({ description: '1 to 255 printable ASCII characters, in one header field. The first response to a key is stored for 24 hours (per API key) and replayed, with `Idempotent-Replayed: true`, to a retry of the same request.' }))

export const IdempotencyHeaders = Type.Object({ 'idempotency-key': IdempotencyKey })

export const UpdateHeaders = Type.Object({
  'if-match': Type.Optional(Type.String({ description: '`*` or a list of entity tags; the update happens only if one matches the current ETag (strong comparison).' })),
  'if-none-match': Type.Optional(Type.String({ description: '`*` or a list of entity tags; the update happens only if none matches the current ETag (weak comparison: `W/"x"` matches `"x"`). `*` matches any user, so it always answers 412 (or 404).' })),
  'idempotency-key': IdempotencyKey
})

export const ReadHeaders = Type.Object({
  'if-match': Type.Optional(Type.String({ description: '`*` or a list of entity tags; when none matches the current ETag (strong comparison), the read answers 412.' })),
  'if-none-match': Type.Optional(Type.String({ description: '`*` or a list of entity tags: when one matches the current ETag (weak comparison), a GET answers 304 with no body, and the POST alias 412.' }))
})

const USER_FIELDS = {
  message: Type.String(),
  klaim_id: Type.String({ examples: ['1753306133860_A36dL'] }),
  user_id: Type.String(),
  email: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  metadata: Type.Record(Type.String(), Type.Unknown()),
  credit_balance: Type.Number(),
  acquisition_source: Type.Union(ACQUISITION_SOURCES.map((s) => Type.Literal(s))),
  created_at: Type.Integer({ description: 'Epoch milliseconds.' }),
  updated_at: Type.Integer({ description: 'Epoch milliseconds; changes only when a field really changed.' })
}

const USER_EXAMPLE = {
  message: 'fetch resource successfully',
  klaim_id: '1753306133860_A36dL',
  user_id: 'my-user-123',
  email: 'ada@example.com',
  name: 'Ada',
  metadata: { plan: 'pro' },
  credit_balance: 0,
  acquisition_source: 'api',
  created_at: 1753306133860,
  updated_at: 1753306133860
}

const HEADER = {
  etag: { type: 'string', description: 'The user\'s version, a strong validator for `If-Match` and `If-None-Match`: `"<klaim_id>.<version>"`.' },
  'cache-control': { type: 'string', description: '`private, no-cache`: a cache may keep the user for this client only, and asks again (`If-None-Match`) before each use.' },
  location: { type: 'string', description: 'The user\'s URL, `/users/{user_id}` percent-encoded.' },
  'idempotent-replayed': { type: 'string', description: '`true` when the response is the stored answer to an earlier request with the same Idempotency-Key.' },
  'ratelimit-limit': { type: 'string', description: 'Requests allowed per minute for the API key.' },
  'ratelimit-remaining': { type: 'string', description: 'Requests left in the current window.' },
  'ratelimit-reset': { type: 'string', description: 'Seconds until the window resets.' }
} as const

/** A 304 to a read: no body, and the user's `ETag`. */
export const notModifiedResponse = Type.Null({
  description: '`If-None-Match` matches the user\'s current `ETag`: no body, as the copy the client holds is current.',
  headers: Object.fromEntries(['etag', 'cache-control', 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset'].map((h) => [h, HEADER[h as keyof typeof HEADER]]))
})

/** The user resource, described for one status, with the response headers it comes with. */
export const userResponse = (description: string, headers: Array<keyof typeof HEADER> = []) => Type.Object(USER_FIELDS, {
  description,
  examples: [USER_EXAMPLE],
  headers: Object.fromEntries(['etag', 'cache-control', ...headers, 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset'].map((h) => [h, HEADER[h as keyof typeof HEADER]]))
})

const FieldErrors = Type.Array(Type.Object({
  path: Type.String({ description: 'JSON Pointer into the body, or /path/user_id, /query/<name>, /header/<name>.' }),
  message: Type.String()
}))

/** The error shape, described for one status with the contract's examples. */
export function errorResponse (description: string, ...examples: Array<{ message: string, code: string, errors?: Array<{ path: string, message: string }> }>) {
  return Type.Object({ message: Type.String(), code: Type.String(), errors: Type.Optional(FieldErrors) }, { description, examples })
}

export const ErrorBody = errorResponse('An error.')

export const HealthBody = Type.Object({ status: Type.String() })

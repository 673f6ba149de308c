import { ValidationError, type FieldError } from './errors.js'
import { applyMetadata, checkMetadataPatch, isPlainObject, jsonEqual, METADATA_MESSAGES, pointer } from './metadata.js'
import type { JsonObject, User } from './user.js'

// Patterns are JSON Schema (ECMAScript, `u` flag) so the HTTP schema reuses them verbatim.
// Lengths count code points; `\p{Cs}` is a lone surrogate; `\s` is what String#trim removes.
const EMAIL_CHAR = String.raw`[^\s@\p{Cc}\p{Cs}]`
const EMAIL_EDGE = String.raw`[^\s@.\p{Cc}\p{Cs}]`
/** Trimmed: 3 to 254 characters, one `@`, a non-empty local part, a dot inside the domain. */
export const EMAIL_PATTERN = String.raw`^\s*(?=\S{3,254}\s*$)${EMAIL_CHAR}+@${EMAIL_EDGE}${EMAIL_CHAR}*\.${EMAIL_CHAR}*${EMAIL_EDGE}\s*$`
const NAME_CHAR = String.raw`[^\u0000\p{Cs}]`
const NAME_EDGE = String.raw`[^\s\u0000\p{Cs}]`
/** Trimmed: 1 to 200 characters. */
export const NAME_PATTERN = String.raw`^\s*${NAME_EDGE}(?:${NAME_CHAR}{0,198}${NAME_EDGE})?\s*$`
const USER_ID_CHAR = String.raw`[^\p{Cc}\p{Cs}]`
const USER_ID_EDGE = String.raw`[^\s\p{Cc}\p{Cs}]`
/** 1 to 255 characters, no control characters, no surrounding white space. */
export const USER_ID_PATTERN = String.raw`^${USER_ID_EDGE}(?:${USER_ID_CHAR}{0,253}${USER_ID_EDGE})?$`

const EMAIL = new RegExp(EMAIL_PATTERN, 'u')
const NAME = new RegExp(NAME_PATTERN, 'u')
const USER_ID = new RegExp(USER_ID_PATTERN, 'u')

export const FIELD_MESSAGES = {
  email: 'must be an email address: 3 to 254 characters, one @ after a non-empty local part, a dot inside the domain, no white space or control characters',
  name: 'must be a string of 1 to 200 characters (after trimming), or null',
  userId: 'must be a string of 1 to 255 characters, without control characters or leading or trailing white space',
  metadata: METADATA_MESSAGES.notObject,
  unknown: 'is not a known field',
  required: 'is required',
  object: 'must be a JSON object'
} as const

export const MISSING_REQUIRED_FIELDS = 'missing required fields'

/** Changes to a profile: every field optional; `name: null` clears it, `metadata` is a merge patch. */
export interface ProfileChanges {
  name?: string | null
  email?: string
  userId?: string
  metadata?: JsonObject | null
}

export interface NewUserFields extends ProfileChanges {
  email: string
}

export function isValidUserId (value: unknown): value is string {
  return typeof value === 'string' && USER_ID.test(value)
}

const MAX_REPORTED_ERRORS = 100

function fail (errors: FieldError[], message?: string): never {
  throw new ValidationError(errors.slice(0, MAX_REPORTED_ERRORS), message)
}

function readChanges (input: unknown, errors: FieldError[]): ProfileChanges {
  const changes: ProfileChanges = {}
  if (!isPlainObject(input)) {
    errors.push({ path: '', message: FIELD_MESSAGES.object })
    return changes
  }
  for (const [key, value] of Object.entries(input)) {
    if (value === undefined) continue
    const path = pointer('', key)
    switch (key) {
      case 'email':
        if (typeof value === 'string' && EMAIL.test(value)) changes.email = value.trim()
        else errors.push({ path, message: FIELD_MESSAGES.email })
        break
      case 'name':
        if (value === null || (typeof value === 'string' && NAME.test(value))) changes.name = value === null ? null : value.trim()
        else errors.push({ path, message: FIELD_MESSAGES.name })
        break
      case 'userId':
        if (isValidUserId(value)) changes.userId = value
        else errors.push({ path, message: FIELD_MESSAGES.userId })
        break
      case 'metadata':
        if (value === null) changes.metadata = null
        else if (!isPlainObject(value)) errors.push({ path, message: FIELD_MESSAGES.metadata })
        else {
          checkMetadataPatch(value, path, errors)
          changes.metadata = value as JsonObject
        }
        break
      default:
        errors.push({ path, message: FIELD_MESSAGES.unknown })
    }
  }
  return changes
}

/** Validates the changes of an update. Throws `ValidationError` listing every offending field. */
export function parseProfileChanges (input: unknown): ProfileChanges {
  const errors: FieldError[] = []
  const changes = readChanges(input, errors)
  if (errors.length > 0) fail(errors)
  return changes
}

/** Validates the fields of a new user (`email` required). Throws `ValidationError`. */
export function parseNewUser (input: unknown): NewUserFields {
  const errors: FieldError[] = []
  const fields = readChanges(input, errors)
  const missing = isPlainObject(input) && input.email === undefined
  if (missing) errors.push({ path: '/email', message: FIELD_MESSAGES.required })
  if (errors.length > 0) fail(errors, missing ? MISSING_REQUIRED_FIELDS : undefined)
  return fields as NewUserFields
}

/**
 * Applies validated changes to a user. Returns the same object when nothing really changes
 * (so `updated_at` and the version stay); otherwise a new user stamped `now`, one version on.
 * Throws `ValidationError` when the merged metadata breaks a limit.
 */
export function applyProfileChanges (user: User, changes: ProfileChanges, now: number): User {
  const next: User = { ...user }
  if (changes.email !== undefined) next.email = changes.email
  if (changes.name !== undefined) next.name = changes.name
  if (changes.userId !== undefined) next.userId = changes.userId
  if (changes.metadata !== undefined) {
    const errors: FieldError[] = []
    next.metadata = applyMetadata(user.metadata, changes.metadata, errors)
    if (errors.length > 0) fail(errors)
  }
  const changed = next.email !== user.email || next.name !== user.name || next.userId !== user.userId ||
    !jsonEqual(next.metadata, user.metadata)
  if (!changed) return user
  return { ...next, updatedAt: now, version: user.version + 1 }
}

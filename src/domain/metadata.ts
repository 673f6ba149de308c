import type { FieldError } from './errors.js'
import type { JsonObject, JsonValue } from './user.js'

export const METADATA_LIMITS = {
  topLevelKeys: 50,
  keyLength: 40,
  depth: 5,
  bytes: 8192
} as const

export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype'])

export const METADATA_MESSAGES = {
  notObject: 'must be a JSON object, or null to remove all metadata',
  notJson: 'must be a JSON value (string, finite number, boolean, null, array or object)',
  keyLength: `metadata keys must be 1 to ${METADATA_LIMITS.keyLength} characters`,
  forbiddenKey: 'this metadata key is not allowed',
  badString: 'must not contain U+0000 or a lone surrogate',
  notFinite: 'must be a finite number',
  topLevelKeys: `metadata must have at most ${METADATA_LIMITS.topLevelKeys} top-level keys`,
  depth: `metadata must be nested at most ${METADATA_LIMITS.depth} levels deep`,
  bytes: `metadata must be at most ${METADATA_LIMITS.bytes} bytes as compact UTF-8 JSON`
} as const

/** Past this many, a patch's errors are not collected further (only 100 are ever reported). */
const MAX_PATCH_ERRORS = 100

// eslint-disable-next-line no-control-regex -- U+0000 is exactly what must be found
const BAD_CHARACTER = /[\u0000\p{Cs}]/u

/** True when a string holds U+0000 or a lone surrogate, which no stored string may. */
export function hasForbiddenCharacter (value: string): boolean {
  return BAD_CHARACTER.test(value)
}

export function isPlainObject (value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** RFC 6901: `~` and `/` are escaped inside a reference token. */
export function pointer (parent: string, token: string | number): string {
  return `${parent}/${String(token).replaceAll('~', '~0').replaceAll('/', '~1')}`
}

function codePointLength (value: string): number {
  return Array.from(value).length
}

function checkKey (key: string, path: string, errors: FieldError[]): void {
  if (FORBIDDEN_KEYS.has(key)) errors.push({ path, message: METADATA_MESSAGES.forbiddenKey })
  else if (key.length === 0 || (key.length > METADATA_LIMITS.keyLength && codePointLength(key) > METADATA_LIMITS.keyLength)) {
    errors.push({ path, message: METADATA_MESSAGES.keyLength })
  } else if (hasForbiddenCharacter(key)) errors.push({ path, message: METADATA_MESSAGES.badString })
}

/**
 * Checks what can be checked on a metadata patch alone: it is JSON, its keys obey the key
 * rules and its strings and numbers are storable. Containers deeper than the depth limit are
 * not inspected: such a patch always fails the depth limit on its result (see `applyMetadata`).
 */
export function checkMetadataPatch (value: unknown, path: string, errors: FieldError[], depth = 1): void {
  if (depth > METADATA_LIMITS.depth) return
  if (Array.isArray(value)) {
    // Index by index: an in-process caller's sparse array has holes, and a hole is not JSON.
    for (let i = 0; i < value.length && errors.length <= MAX_PATCH_ERRORS; i++) checkJsonValue(value[i], pointer(path, i), errors, depth)
    return
  }
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    if (errors.length > MAX_PATCH_ERRORS) return
    const at = pointer(path, key)
    checkKey(key, at, errors)
    checkJsonValue(item, at, errors, depth)
  }
}

function checkJsonValue (item: unknown, at: string, errors: FieldError[], depth: number): void {
  if (item === null || typeof item === 'boolean') return
  if (typeof item === 'string') {
    if (hasForbiddenCharacter(item)) errors.push({ path: at, message: METADATA_MESSAGES.badString })
  } else if (typeof item === 'number') {
    if (!Number.isFinite(item)) errors.push({ path: at, message: METADATA_MESSAGES.notFinite })
  } else if (Array.isArray(item) || isPlainObject(item)) {
    checkMetadataPatch(item, at, errors, depth + 1)
  } else {
    errors.push({ path: at, message: METADATA_MESSAGES.notJson })
  }
}

/** Containers count as levels: `{}` is 1, `{"a":[]}` is 2. Stops counting past `limit`. */
function depthExceeds (value: JsonValue, limit: number): boolean {
  if (typeof value !== 'object' || value === null) return false
  if (limit === 0) return true
  const items = Array.isArray(value) ? value : Object.values(value)
  return items.some((item) => depthExceeds(item, limit - 1))
}

/** RFC 7396 JSON Merge Patch. Keys were checked (no `__proto__`) before this runs. */
export function mergePatch (target: JsonValue | undefined, patch: JsonValue): JsonValue {
  if (!isPlainObject(patch)) return patch
  const result: JsonObject = isPlainObject(target) ? { ...target } : {}
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key]
    else result[key] = mergePatch(result[key], value)
  }
  return result
}

function utf8Length (value: string): number {
  let bytes = 0
  for (let i = 0; i < value.length; i++) {
    const unit = value.charCodeAt(i)
    if (unit < 0x80) bytes += 1
    else if (unit < 0x800) bytes += 2
    else if (unit >= 0xd800 && unit <= 0xdbff) { bytes += 4; i++ } else bytes += 3
  }
  return bytes
}

// The compact JSON of each metadata object that applyMetadata made: it serialises the result to
// check its size, and a repository stores the same text (see metadataJson).
const serialised = new WeakMap<JsonObject, string>()

/**
 * The compact JSON text of metadata, as stored. An object that `applyMetadata` returned was
 * serialised there already, and is not again: treat it as immutable.
 */
export function metadataJson (metadata: JsonObject): string {
  return serialised.get(metadata) ?? JSON.stringify(metadata)
}

/**
 * Applies a checked patch (or `null`, which clears everything) to stored metadata and enforces
 * the limits on the result. Returns the new metadata; throws nothing, reports into `errors`.
 */
export function applyMetadata (stored: JsonObject, patch: JsonObject | null, errors: FieldError[]): JsonObject {
  if (patch === null) return {}
  const limit = { path: '/metadata' }
  if (depthExceeds(patch, METADATA_LIMITS.depth)) {
    errors.push({ ...limit, message: METADATA_MESSAGES.depth })
    return stored
  }
  const result = mergePatch(stored, patch) as JsonObject
  if (Object.keys(result).length > METADATA_LIMITS.topLevelKeys) errors.push({ ...limit, message: METADATA_MESSAGES.topLevelKeys })
  if (depthExceeds(result, METADATA_LIMITS.depth)) errors.push({ ...limit, message: METADATA_MESSAGES.depth })
  const json = JSON.stringify(result)
  if (utf8Length(json) > METADATA_LIMITS.bytes) errors.push({ ...limit, message: METADATA_MESSAGES.bytes })
  serialised.set(result, json)
  return result
}

/** Structural equality of JSON values; key order does not matter. */
export function jsonEqual (a: JsonValue, b: JsonValue): boolean {
  if (a === b) return true
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((item, i) => jsonEqual(item, b[i] as JsonValue))
  }
  const keys = Object.keys(a)
  if (keys.length !== Object.keys(b).length) return false
  return keys.every((key) => Object.hasOwn(b, key) && jsonEqual(a[key] as JsonValue, b[key] as JsonValue))
}

/** A parsed `If-Match` (RFC 9110 §13.1.1): any current representation, or a list of entity tags. */
export type IfMatch = { any: true } | { any: false, strongTags: string[] }

/**
 * A parsed `If-None-Match` (RFC 9110 §13.1.2): any current representation, or a list of entity
 * tags, each without its weak prefix (`W/`), as this field compares them weakly.
 */
export type IfNoneMatch = { any: true } | { any: false, opaqueTags: string[] }

// entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE ; etagc = %x21 / %x23-7E / obs-text
const ENTITY_TAG = /^(W\/)?("[\x21\x23-\x7e\x80-\xff]*")/

interface EntityTag { weak: boolean, opaque: string }

/** `*`, or the entity tags of a non-empty list; `undefined` when the value is neither. */
function entityTags (value: string): '*' | EntityTag[] | undefined {
  const trimmed = value.trim()
  if (trimmed === '*') return '*'
  const tags: EntityTag[] = []
  let rest = trimmed
  while (rest.length > 0) {
    if (rest[0] === ',') { rest = rest.slice(1).trimStart(); continue }
    const match = ENTITY_TAG.exec(rest)
    if (match === null) return undefined
    tags.push({ weak: match[1] !== undefined, opaque: match[2] as string })
    rest = rest.slice(match[0].length).trimStart()
    if (rest.length > 0 && rest[0] !== ',') return undefined
  }
  return tags.length === 0 ? undefined : tags
}

/** Parses an `If-Match` value; `undefined` when it is neither `*` nor a list of entity tags. */
export function parseIfMatch (value: string): IfMatch | undefined {
  const tags = entityTags(value)
  if (tags === undefined) return undefined
  return tags === '*' ? { any: true } : { any: false, strongTags: tags.filter((t) => !t.weak).map((t) => t.opaque) }
}

/** Strong comparison: a weak tag never matches. */
export function ifMatchAllows (condition: IfMatch, currentEtag: string): boolean {
  return condition.any || condition.strongTags.includes(currentEtag)
}

/** Parses an `If-None-Match` value; `undefined` when it is neither `*` nor a list of entity tags. */
export function parseIfNoneMatch (value: string): IfNoneMatch | undefined {
  const tags = entityTags(value)
  if (tags === undefined) return undefined
  return tags === '*' ? { any: true } : { any: false, opaqueTags: tags.map((t) => t.opaque) }
}

/** Weak comparison: `W/"x"` matches `"x"`. True when no tag matches the current one. */
export function ifNoneMatchAllows (condition: IfNoneMatch, currentEtag: string): boolean {
  return !(condition.any || condition.opaqueTags.includes(currentEtag))
}

/** A parsed `If-Match` (RFC 9110 §13.1.1): any current representation, or a list of entity tags. */
export type IfMatch = { any: true } | { any: false, strongTags: string[] }

// entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE ; etagc = %x21 / %x23-7E / obs-text
const ENTITY_TAG = /^(W\/)?"[\x21\x23-\x7e\x80-\xff]*"/

/** Parses an `If-Match` value; `undefined` when it is neither `*` nor a list of entity tags. */
export function parseIfMatch (value: string): IfMatch | undefined {
  const trimmed = value.trim()
  if (trimmed === '*') return { any: true }
  const strongTags: string[] = []
  let rest = trimmed
  let seen = 0
  while (rest.length > 0) {
    if (rest[0] === ',') { rest = rest.slice(1).trimStart(); continue }
    const match = ENTITY_TAG.exec(rest)
    if (match === null) return undefined
    seen++
    if (match[1] === undefined) strongTags.push(match[0])
    rest = rest.slice(match[0].length).trimStart()
    if (rest.length > 0 && rest[0] !== ',') return undefined
  }
  return seen === 0 ? undefined : { any: false, strongTags }
}

/** Strong comparison: a weak tag never matches. */
export function ifMatchAllows (condition: IfMatch, currentEtag: string): boolean {
  return condition.any || condition.strongTags.includes(currentEtag)
}

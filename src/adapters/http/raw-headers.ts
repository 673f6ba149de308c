/**
 * How many times the request carries the field `name` (lower case), from Node's `rawHeaders`.
 * Node keeps only the first of some fields sent twice (`Authorization`, `Content-Type`), where a
 * proxy in front may have read the last: the routes refuse a request that sends those twice.
 */
export function occurrences (rawHeaders: string[], name: string): number {
  let count = 0
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const field = rawHeaders[i] as string
    if (field.length === name.length && field.toLowerCase() === name) count++
  }
  return count
}

import type { FieldError } from '../../domain/errors.js'
import { pointer } from '../../domain/metadata.js'

// What only a JSON body's text shows, not the value `JSON.parse` makes of it: a repeated member
// name, and a number that the parse would change. The HTTP adapter's parser runs it on every
// object body (see registerJsonBody in json-body.ts).

/** An object or array being read by `textErrors`, with what is needed to name its members. */
interface Container {
  readonly parent: Container | undefined
  /** Its name in its parent object, or its index in its parent array. */
  readonly key: string | number
  /** The names seen so far, for an object; `undefined` for an array. */
  readonly names: Set<string> | undefined
  /** The name of the member being read, or the index of the element being read. */
  at: string | number
}

function pathOf (container: Container): string {
  const keys: Array<string | number> = []
  for (let c: Container | undefined = container; c.parent !== undefined; c = c.parent) keys.push(c.key)
  return keys.reduceRight<string>((path, key) => pointer(path, key), '')
}

/**
 * The search stops at as many as a 400 lists (see `validationProblem`), or once their paths are
 * this long in all: deep in a body, each path can be as long as the body, and a short body must
 * not get a long answer.
 */
const MOST_ERRORS_FOUND = 100
const MOST_PATH_CHARACTERS = 8192

/** Where the string that opens at `start` closes: the next quote not escaped by a backslash. */
function closingQuote (text: string, start: number): number {
  let end = text.indexOf('"', start + 1)
  while (end !== -1) {
    let backslashes = 0
    while (text.charCodeAt(end - 1 - backslashes) === 0x5c) backslashes++
    if (backslashes % 2 === 0) return end
    end = text.indexOf('"', end + 1)
  }
  return text.length // not reached for valid JSON, which the text is
}

/** Where the number that starts at `start` ends: after its last digit, sign, point or exponent mark. */
function numberEnd (text: string, start: number): number {
  let end = start + 1
  for (let c = text.charCodeAt(end); (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === 0x2d; c = text.charCodeAt(++end));
  return end
}

/** A JSON number's value as its significant digits and the power of ten after them (`-1.50e3` is `-15e2`), or `0`. */
function decimal (literal: string): string {
  const [, sign = '', whole = '', fraction = '', exponent = '0'] = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(literal) ?? []
  const digits = (whole + fraction).replace(/^0+/, '')
  const significant = digits.replace(/0+$/, '')
  if (significant === '') return '0'
  return `${sign}${significant}e${Number(exponent) - fraction.length + digits.length - significant.length}`
}

export const REPEATED_NAME_MESSAGE = 'must appear only once in its object'
export const INEXACT_INTEGER_MESSAGE = 'is an integer this service cannot keep exactly (it stores numbers as 64-bit floats, which hold every integer up to 2^53, 9007199254740992): send it as a string'
export const ZEROED_NUMBER_MESSAGE = 'is a number too small to keep (as a 64-bit float it would be 0)'

/**
 * Why the number `literal` (valid JSON) cannot be kept as sent, if it cannot. Numbers are read as
 * `JSON.parse` reads them, as 64-bit floats, and written back as `JSON.stringify` writes those.
 * That rounds a number with a fraction or an exponent to the nearest float, as every JavaScript
 * reader of JSON does (`0.79999999999999993` is `0.7999999999999999`), but it would silently
 * change an integer beyond 2^53 (`12345678901234567890` would come back as
 * `12345678901234567000`: a 64-bit ID from another system), and make zero of a number too small
 * for a float (`1e-400`): those are refused. A number too large for one (`1e400`) is refused as
 * not finite, with the metadata's other rules.
 */
export function numberProblem (literal: string): string | undefined {
  // Up to 15 characters and no exponent: an integer below 10^15, which a float holds exactly, or
  // a fraction far from small enough to be 0.
  if (literal.length <= 15 && !/[eE]/.test(literal)) return undefined
  const value = Number(literal)
  if (!Number.isFinite(value)) return undefined
  if (/[.eE]/.test(literal)) return value === 0 && decimal(literal) !== '0' ? ZEROED_NUMBER_MESSAGE : undefined
  return decimal(literal) === decimal(JSON.stringify(value)) ? undefined : INEXACT_INTEGER_MESSAGE
}

/**
 * The field errors (`/name`, `/metadata/plan`) that only the text of `text`, valid JSON, shows:
 * - a member whose name an earlier member of the same object has. `JSON.parse` keeps the last of
 *   them; other parsers keep the first or refuse the text (RFC 8259 leaves it open, I-JSON
 *   forbids it), so a body that has them means different things to different readers;
 * - a number that would not be kept as sent (see `numberProblem`).
 */
export function textErrors (text: string): FieldError[] {
  const found: FieldError[] = []
  let pathCharacters = 0
  const add = (path: string, message: string): boolean => {
    found.push({ path, message })
    pathCharacters += path.length
    return found.length === MOST_ERRORS_FOUND || pathCharacters >= MOST_PATH_CHARACTERS
  }
  let open: Container | undefined
  let expectingName = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22) { // "
      const end = closingQuote(text, i)
      if (expectingName && open?.names !== undefined) {
        const raw = text.slice(i + 1, end)
        const name = raw.includes('\\') ? JSON.parse(text.slice(i, end + 1)) as string : raw
        if (!open.names.has(name)) {
          open.names.add(name)
        } else if (add(pointer(pathOf(open), name), REPEATED_NAME_MESSAGE)) {
          return found
        }
        open.at = name
        expectingName = false
      }
      i = end
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) { // - 0-9
      const end = numberEnd(text, i)
      const problem = numberProblem(text.slice(i, end))
      if (problem !== undefined && open !== undefined && add(pointer(pathOf(open), open.at), problem)) return found
      i = end - 1
    } else if (c === 0x7b || c === 0x5b) { // { [
      open = { parent: open, key: open?.at ?? '', names: c === 0x7b ? new Set() : undefined, at: 0 }
      expectingName = c === 0x7b
    } else if (c === 0x2c) { // ,
      if (open?.names !== undefined) expectingName = true
      else if (open !== undefined) open.at = (open.at as number) + 1
    } else if (c === 0x7d || c === 0x5d) { // } ]
      open = open?.parent
    }
  }
  return found
}

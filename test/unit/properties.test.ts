import fc from 'fast-check'
import t from 'tap'
import { INEXACT_INTEGER_MESSAGE, numberProblem, REPEATED_NAME_MESSAGE, textErrors, ZEROED_NUMBER_MESSAGE } from '../../src/adapters/http/json-text.js'
import { validatorCompiler } from '../../src/adapters/http/validation.js'
import { Email, Name, UserId } from '../../src/adapters/http/schemas.js'
import { ValidationError } from '../../src/domain/errors.js'
import { jsonEqual, mergePatch, pointer } from '../../src/domain/metadata.js'
import { parseProfileChanges } from '../../src/domain/profile-rules.js'
import type { JsonObject, JsonValue } from '../../src/domain/user.js'

const SEED = 20261127
const params = { seed: SEED, numRuns: Number(process.env.PROPERTY_RUNS ?? 2000) }

// Characters at the edges of every rule: white space JavaScript trims (and some it does not),
// controls, NUL, lone surrogate halves, astral characters, and the email syntax.
const EDGE = [' ', '\t', '\n', '\u00a0', '\u2028', '\ufeff', '\u0085', '\u0000', '\u0001', '\u007f', '\ud800', '\udc00', '😀', 'é', 'a', 'Z', '0', '@', '.', '-', '_', '"', '\\']
const edgeString = fc.oneof(
  fc.string({ unit: fc.constantFrom(...EDGE), maxLength: 12 }),
  fc.tuple(fc.string({ unit: fc.constantFrom(...EDGE), maxLength: 3 }), fc.integer({ min: 195, max: 260 }), fc.constantFrom('a', '😀', 'é'), fc.string({ unit: fc.constantFrom(...EDGE), maxLength: 3 }))
    .map(([a, n, c, b]) => a + c.repeat(n) + b),
  fc.tuple(fc.string({ unit: fc.constantFrom('a', '.', '-', ' ', '😀'), maxLength: 8 }), fc.string({ unit: fc.constantFrom('a', '.', '@', ' ', '\u0000'), maxLength: 8 }))
    .map(([local, domain]) => `${local}@${domain}`)
)

const codePoints = (s: string): number => Array.from(s).length
const hasLoneSurrogate = (s: string): boolean => /\p{Cs}/u.test(s)

// Plain restatements of the contract's rules, written independently of the patterns.
const oracles: Record<'email' | 'name' | 'userId', (s: string) => boolean> = {
  email (raw) {
    const s = raw.trim()
    const at = s.split('@')
    if (at.length !== 2) return false
    const [local = '', domain = ''] = at
    return codePoints(s) >= 3 && codePoints(s) <= 254 && local.length > 0 && !/[\s\p{Cc}]/u.test(s) && !hasLoneSurrogate(s) &&
      domain.includes('.') && !domain.startsWith('.') && !domain.endsWith('.')
  },
  name (raw) {
    const s = raw.trim()
    return codePoints(s) >= 1 && codePoints(s) <= 200 && !s.includes('\u0000') && !hasLoneSurrogate(raw)
  },
  userId (s) {
    return codePoints(s) >= 1 && codePoints(s) <= 255 && !/\p{Cc}/u.test(s) && s === s.trim() && !hasLoneSurrogate(s)
  }
}

const schemas = { email: Email, name: Name, userId: UserId }

function domainAccepts (field: 'email' | 'name' | 'userId', value: string): boolean {
  try {
    parseProfileChanges({ [field]: value })
    return true
  } catch (error) {
    if (error instanceof ValidationError) return false
    throw error
  }
}

for (const field of ['email', 'name', 'userId'] as const) {
  t.test(`${field}: the domain, the HTTP schema and the contract's rule agree on any string`, async (t) => {
    const schemaAccepts = validatorCompiler({ schema: schemas[field], method: 'PUT', url: '/', httpPart: 'body' }) as (v: unknown) => boolean
    fc.assert(fc.property(edgeString, (value) => {
      const expected = oracles[field](value)
      return domainAccepts(field, value) === expected && schemaAccepts(value) === expected
    }), params)
    t.pass(`${params.numRuns} strings`)
  })
}

const key = fc.string({ unit: fc.constantFrom('a', 'b', 'c', 'd'), minLength: 1, maxLength: 2 })
const leaf = fc.oneof(fc.integer(), fc.boolean(), fc.string({ maxLength: 3 }), fc.constant(null))
const json = fc.letrec<{ value: JsonValue, object: JsonObject }>((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('value'), { maxLength: 3 }), tie('object')),
  object: fc.dictionary(key, tie('value'), { maxKeys: 4 }) as fc.Arbitrary<JsonObject>
}))
const stored = json.object.map((o) => mergePatch({}, o) as JsonObject) // stored metadata holds no nulls

/** Objects outside arrays hold no null: a null in a patch removes its key. */
function noNullMembers (value: JsonValue): boolean {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return true
  return Object.values(value).every((v) => v !== null && noNullMembers(v))
}

t.test('merge patch: RFC 7396 properties on random documents', async (t) => {
  fc.assert(fc.property(stored, json.object, (target, patch) => {
    const result = mergePatch(target, patch) as JsonObject
    for (const [k, v] of Object.entries(patch)) {
      if (v === null) { if (Object.hasOwn(result, k)) return false } else if (typeof v !== 'object' || Array.isArray(v)) {
        if (!jsonEqual(result[k] as JsonValue, v)) return false
      } else if (typeof result[k] !== 'object' || result[k] === null || Array.isArray(result[k])) return false
    }
    for (const k of Object.keys(target)) if (!Object.hasOwn(patch, k) && !jsonEqual(result[k] as JsonValue, target[k] as JsonValue)) return false
    return jsonEqual(mergePatch(result, patch), result) && noNullMembers(result)
  }), params)
  fc.assert(fc.property(stored, (target) => jsonEqual(mergePatch(target, {}), target) && jsonEqual(mergePatch({}, target), target)), params)
  t.pass('merge patch properties hold')
})

/** A name in JSON with every UTF-16 unit escaped, as `"\u0061"` for `"a"`: the same name to a parser. */
const escapedName = (name: string): string =>
  `"${Array.from({ length: name.length }, (_, i) => `\\u${name.charCodeAt(i).toString(16).padStart(4, '0')}`).join('')}"`

/**
 * `value` as JSON text, in which its `target`-th non-empty object (children first) writes its
 * first member a second time, under an escaped name; and that member's path, if there was one.
 */
function writtenTwice (value: JsonValue, target: number): { text: string, path: string | undefined } {
  let objects = 0
  let path: string | undefined
  const write = (v: JsonValue, at: string): string => {
    if (Array.isArray(v)) return `[ ${v.map((x, i) => write(x, pointer(at, i))).join(' , ')} ]`
    if (v === null || typeof v !== 'object') return JSON.stringify(v)
    const entries = Object.entries(v)
    const members = entries.map(([k, x]) => `${JSON.stringify(k)} : ${write(x as JsonValue, pointer(at, k))}`)
    const first = entries[0]
    if (first !== undefined && objects++ === target) {
      path = pointer(at, first[0])
      members.push(`${escapedName(first[0])}:${JSON.stringify(first[1])}`)
    }
    return `{ ${members.join(' , ')} }`
  }
  return { text: write(value, ''), path }
}

// Names with the characters a scanner of JSON text could trip on: quotes, backslashes, the
// pointer's escapes, braces and brackets, commas and colons, astral characters.
const trickyName = fc.string({ unit: fc.constantFrom('a', '"', '\\', '~', '/', '{', '}', '[', ']', ',', ':', '😀', '\u0000'), maxLength: 4 })
const tricky = fc.letrec<{ value: JsonValue, object: JsonObject }>((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, leaf, trickyName, fc.array(tie('value'), { maxLength: 3 }), tie('object')),
  object: fc.dictionary(trickyName, tie('value'), { maxKeys: 4 }) as fc.Arbitrary<JsonObject>
}))

t.test('repeated names: found exactly where a member is written twice, at any depth', async (t) => {
  fc.assert(fc.property(tricky.object, (doc) => textErrors(JSON.stringify(doc)).length === 0 && textErrors(JSON.stringify(doc, null, 2)).length === 0), params)
  fc.assert(fc.property(tricky.object, fc.nat({ max: 8 }), (doc, target) => {
    const { text, path } = writtenTwice(doc, target)
    return jsonEqual(JSON.parse(text) as JsonValue, doc) &&
      jsonEqual(textErrors(text) as unknown as JsonValue, path === undefined ? [] : [{ path, message: REPEATED_NAME_MESSAGE }])
  }), params)
  t.pass('repeated names are found where they are, and only there')
})

t.test('the search stops at 100, or at 8 KiB of paths, so a deep body gets a short answer', async (t) => {
  const repeats = (n: number): string => `{${Array.from({ length: n }, (_, i) => `"k${i}":1,"k${i}":2`).join(',')}}`
  t.equal(textErrors(repeats(150)).length, 100, 'at most as many as a 400 lists')
  const depth = 30_000
  const deep = `{"metadata":{"a":${'['.repeat(depth)}${repeats(100)}${']'.repeat(depth)}}}`
  const found = textErrors(deep)
  t.equal(found.length, 1, 'one path of 60 KB is enough')
  t.equal(found[0]?.path, `/metadata/a${'/0'.repeat(depth)}/k0`)
  const shallower = `{"metadata":{"a":${'['.repeat(1000)}${repeats(100)}${']'.repeat(1000)}}}`
  const some = textErrors(shallower)
  t.equal(some.length, 5, 'paths of 2 KB each, until 8 KiB of them')
  t.ok(some.reduce((n, e) => n + e.path.length, 0) < 8192 + 2020)
})

t.test('numbers: every number JavaScript writes is kept; an integer is refused exactly when it would come back changed', async (t) => {
  fc.assert(fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (n) => numberProblem(JSON.stringify(n)) === undefined), params)
  // Integers of any size to 2^69 (which JSON.stringify still writes without an exponent), and
  // many around 2^53, where a float stops holding every integer.
  const integer = fc.oneof(fc.bigInt({ min: -(2n ** 69n), max: 2n ** 69n }), fc.bigInt({ min: 2n ** 53n - 4096n, max: 2n ** 53n + 4096n }), fc.bigInt({ min: -(2n ** 53n) - 4096n, max: -(2n ** 53n) + 4096n }))
  fc.assert(fc.property(integer, (n) => {
    const comesBack = BigInt(JSON.stringify(JSON.parse(n.toString()))) === n
    return numberProblem(n.toString()) === (comesBack ? undefined : INEXACT_INTEGER_MESSAGE)
  }), params)
  // With a fraction or an exponent, a number is read as the nearest float, and refused only when
  // that is 0 and the number is not.
  const written = fc.tuple(fc.constantFrom('', '-'), fc.stringMatching(/^\d{1,25}$/), fc.stringMatching(/^\d{0,25}$/), fc.integer({ min: -700, max: 700 }))
    .map(([sign, whole, fraction, exponent]) => `${sign}${whole}${fraction === '' ? '' : `.${fraction}`}e${exponent}`)
  fc.assert(fc.property(written, (literal) => {
    const zeroed = Number(literal) === 0 && /[1-9]/.test(literal.split('e')[0] ?? '')
    return numberProblem(literal) === (zeroed ? ZEROED_NUMBER_MESSAGE : undefined)
  }), params)
  const examples: Array<[string, string | undefined]> = [
    ['9007199254740992', undefined], ['9007199254740993', INEXACT_INTEGER_MESSAGE], ['-9007199254740993', INEXACT_INTEGER_MESSAGE],
    ['12345678901234567890', INEXACT_INTEGER_MESSAGE], ['12345678901234567000', undefined], ['18446744073709552000', undefined],
    ['0', undefined], ['-0', undefined], ['0.1', undefined], ['0.79999999999999993', undefined], ['12345678901234567890.5', undefined],
    ['1e-400', ZEROED_NUMBER_MESSAGE], ['-0.0000000001e-320', ZEROED_NUMBER_MESSAGE], ['0e-400', undefined], ['5e-324', undefined], ['1e400', undefined]
  ]
  for (const [literal, problem] of examples) t.equal(numberProblem(literal), problem, literal)
})

t.test('numbers: found where they are, in objects and arrays, and never inside strings', async (t) => {
  const text = '{"name": "12345678901234567890", "metadata": {"a": [1, 12345678901234567890 , {"b": 1e-400}], "c": -9007199254740993}}'
  t.same(textErrors(text), [
    { path: '/metadata/a/1', message: INEXACT_INTEGER_MESSAGE },
    { path: '/metadata/a/2/b', message: ZEROED_NUMBER_MESSAGE },
    { path: '/metadata/c', message: INEXACT_INTEGER_MESSAGE }
  ])
  t.same(textErrors('{"n": 12345678901234567890, "n": 1}'), [{ path: '/n', message: INEXACT_INTEGER_MESSAGE }, { path: '/n', message: REPEATED_NAME_MESSAGE }], 'with repeated names, in the order written')
})

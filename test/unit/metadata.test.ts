import t from 'tap'
import { ValidationError } from '../../src/domain/errors.js'
import { applyMetadata, checkMetadataPatch, jsonEqual, mergePatch, metadataJson, METADATA_MESSAGES } from '../../src/domain/metadata.js'
import { applyProfileChanges, parseProfileChanges } from '../../src/domain/profile-rules.js'
import type { JsonObject } from '../../src/domain/user.js'
import { sampleUser } from '../helpers/users.js'

const base = sampleUser()

function limitErrors (stored: JsonObject, patch: JsonObject | null): string[] {
  const errors: Array<{ path: string, message: string }> = []
  applyMetadata(stored, patch, errors)
  return errors.map((e) => e.message)
}

function patchErrors (metadata: unknown): Array<{ path: string, message: string }> {
  try {
    parseProfileChanges({ metadata })
    return []
  } catch (error) {
    if (error instanceof ValidationError) return error.errors
    throw error
  }
}

function nest (levels: number): JsonObject {
  let value: JsonObject = { leaf: 1 }
  for (let i = 1; i < levels; i++) value = { k: value }
  return value
}

t.test('merge patch follows RFC 7396, nested deletes included', async (t) => {
  t.same(mergePatch({ a: 1, b: 2 }, { b: null, c: 3 }), { a: 1, c: 3 })
  t.same(mergePatch({ a: { x: 1, y: 2 } }, { a: { y: null, z: 3 } }), { a: { x: 1, z: 3 } })
  t.same(mergePatch({ a: { x: { deep: 1, keep: 2 } } }, { a: { x: { deep: null } } }), { a: { x: { keep: 2 } } })
  t.same(mergePatch({ a: [1, 2] }, { a: [3] }), { a: [3] }, 'arrays are replaced')
  t.same(mergePatch({ a: 1 }, { a: { b: null, c: 1 } }), { a: { c: 1 } }, 'nulls vanish inside a new object')
  t.same(mergePatch({ a: { b: 1 } }, { a: 'x' }), { a: 'x' })
  t.same(mergePatch({ a: 1 }, { a: [null] }), { a: [null] }, 'null inside an array is a value')
  t.same(mergePatch({}, {}), {})
  const stored = { a: { b: 1 } }
  mergePatch(stored, { a: { b: 2 } })
  t.same(stored, { a: { b: 1 } }, 'the stored value is not mutated')
})

t.test('update applies metadata as a merge patch; null clears it', async (t) => {
  const user = { ...base, metadata: { plan: 'free', nested: { a: 1, b: 2 } } }
  t.same(applyProfileChanges(user, { metadata: { plan: 'pro', nested: { a: null } } }, 2).metadata, { plan: 'pro', nested: { b: 2 } })
  t.same(applyProfileChanges(user, { metadata: null }, 2).metadata, {})
})

t.test('top-level keys: 50 allowed, 51 refused, counted on the result', async (t) => {
  const fifty = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`k${i}`, i]))
  t.same(limitErrors({}, fifty), [])
  t.same(limitErrors(fifty, { extra: 1 }), [METADATA_MESSAGES.topLevelKeys])
  t.same(limitErrors(fifty, { extra: 1, k0: null }), [], 'a removal makes room')
})

t.test('depth: 5 levels allowed, 6 refused; arrays count as levels', async (t) => {
  t.same(limitErrors({}, { a: { b: { c: { d: { e: 1 } } } } }), [])
  t.same(limitErrors({}, { a: { b: { c: { d: { e: {} } } } } }), [METADATA_MESSAGES.depth])
  t.same(limitErrors({}, { a: [[[[1]]]] }), [])
  t.same(limitErrors({}, { a: [[[[[1]]]]] }), [METADATA_MESSAGES.depth])
  t.same(limitErrors({ a: { b: { c: { d: {} } } } }, { a: { b: { c: { d: { e: { f: 1 } } } } } }), [METADATA_MESSAGES.depth])
  t.same(limitErrors({}, nest(200)), [METADATA_MESSAGES.depth], 'a very deep patch is refused without walking it all')
})

t.test('size: 8192 bytes of compact UTF-8 JSON allowed, 8193 refused', async (t) => {
  const overhead = JSON.stringify({ s: '' }).length
  t.same(limitErrors({}, { s: 'x'.repeat(8192 - overhead) }), [])
  t.same(limitErrors({}, { s: 'x'.repeat(8193 - overhead) }), [METADATA_MESSAGES.bytes])
  t.same(limitErrors({}, { s: 'é'.repeat((8192 - overhead) / 2) }), [], 'é is 2 bytes')
  t.same(limitErrors({}, { s: 'é'.repeat((8192 - overhead) / 2) + 'x' }), [METADATA_MESSAGES.bytes])
  t.same(limitErrors({}, { s: '😀'.repeat((8192 - overhead) / 4) }), [], 'an astral character is 4 bytes')
  t.same(limitErrors({}, { s: '😀'.repeat((8192 - overhead) / 4) + 'x' }), [METADATA_MESSAGES.bytes])
})

t.test('merged metadata is serialised once: the size check\'s text is the one stored', async (t) => {
  const stringify = JSON.stringify
  let calls = 0
  JSON.stringify = ((...args: Parameters<typeof stringify>) => { calls++; return stringify(...args) }) as typeof stringify
  t.teardown(() => { JSON.stringify = stringify })
  const merged = applyMetadata({ plan: 'free', seats: 1 }, { plan: 'pro', note: 'é\u2028' }, [])
  t.equal(metadataJson(merged), '{"plan":"pro","seats":1,"note":"é\u2028"}')
  t.equal(calls, 1)
  const read = { plan: 'pro' }
  t.equal(metadataJson(read), '{"plan":"pro"}', 'metadata from elsewhere (a read) is serialised when asked')
  t.equal(calls, 2)
})

t.test('key rules apply to the patch at every depth', async (t) => {
  t.same(patchErrors({ '': null }), [{ path: '/metadata/', message: METADATA_MESSAGES.keyLength }])
  t.same(patchErrors({ ['k'.repeat(40)]: 1 }), [])
  t.same(patchErrors({ ['😀'.repeat(40)]: 1 }), [], 'keys count code points')
  t.same(patchErrors({ ['k'.repeat(41)]: 1 }), [{ path: `/metadata/${'k'.repeat(41)}`, message: METADATA_MESSAGES.keyLength }])
  for (const key of ['__proto__', 'constructor', 'prototype']) {
    const deep = JSON.parse(`{"a":[{"b":{"${key}":1}}]}`)
    t.same(patchErrors(deep), [{ path: `/metadata/a/0/b/${key}`, message: METADATA_MESSAGES.forbiddenKey }], key)
  }
  t.same(patchErrors({ 'a/b~c': { x: '\u0000' } }), [{ path: '/metadata/a~1b~0c/x', message: METADATA_MESSAGES.badString }], 'JSON Pointer escapes')
  t.same(patchErrors({ a: Infinity, b: [NaN] }).map((e) => e.message), [METADATA_MESSAGES.notFinite, METADATA_MESSAGES.notFinite])
  t.same(patchErrors({ a: '\ud83d' }), [{ path: '/metadata/a', message: METADATA_MESSAGES.badString }], 'a lone surrogate')
  t.same(patchErrors({ '\ud83d': 1 }), [{ path: '/metadata/\ud83d', message: METADATA_MESSAGES.badString }])
  t.same(patchErrors({ a: new Date(0), b: undefined, c: () => 1 }).map((e) => e.path), ['/metadata/a', '/metadata/b', '/metadata/c'], 'in-process callers pass only JSON')
  // eslint-disable-next-line no-sparse-arrays -- the hole is the point
  t.same(patchErrors({ a: [1, , 3] }), [{ path: '/metadata/a/1', message: METADATA_MESSAGES.notJson }], 'a hole in a sparse array is not JSON')
  const holes: unknown[] = []
  holes[1_000_000] = 1
  const collected: Array<{ path: string, message: string }> = []
  checkMetadataPatch({ a: holes }, '/metadata', collected)
  t.equal(collected.length, 101, 'a huge sparse array is not walked to its end: 100 errors are reported, 101 collected')
  t.equal(patchErrors({ a: holes }).length, 100)
  t.same(patchErrors([1]), [{ path: '/metadata', message: METADATA_MESSAGES.notObject }])
  t.same(patchErrors('x'), [{ path: '/metadata', message: METADATA_MESSAGES.notObject }])
  const cyclic: Record<string, unknown> = {}
  cyclic.self = cyclic
  t.same(patchErrors(cyclic), [], 'a cycle is not walked forever…')
  t.same(limitErrors({}, cyclic as JsonObject), [METADATA_MESSAGES.depth], '…and fails the depth limit')
})

t.test('jsonEqual ignores key order only', async (t) => {
  t.ok(jsonEqual({ a: 1, b: [1, { c: 2 }] }, { b: [1, { c: 2 }], a: 1 }))
  t.notOk(jsonEqual({ a: 1 }, { a: 1, b: 1 }))
  t.notOk(jsonEqual({ a: 1, c: 1 }, { a: 1, b: 1 }))
  t.notOk(jsonEqual([1, 2], [2, 1]))
  t.notOk(jsonEqual([1], { 0: 1 }))
  t.notOk(jsonEqual(null, {}))
})

import t from 'tap'
import { ValidationError } from '../../src/domain/errors.js'
import { applyProfileChanges, FIELD_MESSAGES, parseNewUser, parseProfileChanges } from '../../src/domain/profile-rules.js'
import { emailKey } from '../../src/domain/user.js'
import { sampleUser } from '../helpers/users.js'

const user = sampleUser({ name: 'Ada', metadata: { plan: 'free' } })

function errorsOf (fn: () => unknown): Array<{ path: string, message: string }> {
  try {
    fn()
  } catch (error) {
    if (error instanceof ValidationError) return error.errors
    throw error
  }
  throw new Error('expected a ValidationError')
}

t.test('email: trimmed, 3 to 254 characters, one @, a dot inside the domain', async (t) => {
  const ok = (email: string) => parseProfileChanges({ email }).email
  t.equal(ok('  ada@example.com \t'), 'ada@example.com')
  t.equal(ok('a@b.c'), 'a@b.c')
  t.equal(ok('ÄDA@exämple.com'), 'ÄDA@exämple.com')
  const local = 'l'.repeat(254 - '@b.co'.length)
  t.equal(ok(`${local}@b.co`), `${local}@b.co`, '254 characters')
  t.equal(ok(` ${local}@b.co `), `${local}@b.co`, '254 after trimming')
  for (const bad of [`${local}x@b.co`, 'ab', '@b.co', 'a@', 'a@@b.co', 'a@b@c.co', 'a b@c.co', 'a@bco', 'a@.bc', 'a@bc.', 'a\u0001@b.co', 'a@b.c\u0000', 'a\ud800@b.co', '', '   ']) {
    t.same(errorsOf(() => parseProfileChanges({ email: bad })), [{ path: '/email', message: FIELD_MESSAGES.email }], JSON.stringify(bad))
  }
  t.same(errorsOf(() => parseProfileChanges({ email: 42 })), [{ path: '/email', message: FIELD_MESSAGES.email }])
})

t.test('email uniqueness key folds case once, in the domain, also beyond ASCII', async (t) => {
  t.equal(emailKey('Ada@Example.COM'), 'ada@example.com')
  t.equal(emailKey('ÄDA@EXÄMPLE.COM'), 'äda@exämple.com')
})

t.test('name: trimmed, 1 to 200 characters, or null', async (t) => {
  t.equal(parseProfileChanges({ name: '  Ada Lovelace ' }).name, 'Ada Lovelace')
  t.equal(parseProfileChanges({ name: null }).name, null)
  t.equal(parseProfileChanges({ name: 'x'.repeat(200) }).name, 'x'.repeat(200))
  t.equal(parseProfileChanges({ name: ` ${'x'.repeat(200)}  ` }).name, 'x'.repeat(200))
  t.equal(parseProfileChanges({ name: '😀'.repeat(200) }).name, '😀'.repeat(200), 'characters are code points')
  t.equal(parseProfileChanges({ name: 'a\tb' }).name, 'a\tb')
  for (const bad of ['', '   ', 'x'.repeat(201), '😀'.repeat(201), 'a\u0000b', 'a\udc00', 42, true, {}, []]) {
    t.same(errorsOf(() => parseProfileChanges({ name: bad })), [{ path: '/name', message: FIELD_MESSAGES.name }], JSON.stringify(bad))
  }
})

t.test('userId: 1 to 255 characters, no control characters, no surrounding white space', async (t) => {
  t.equal(parseProfileChanges({ userId: 'a' }).userId, 'a')
  t.equal(parseProfileChanges({ userId: 'x'.repeat(255) }).userId, 'x'.repeat(255))
  t.equal(parseProfileChanges({ userId: 'a b/c@d.e' }).userId, 'a b/c@d.e')
  t.equal(parseProfileChanges({ userId: '😀'.repeat(255) }).userId, '😀'.repeat(255))
  for (const bad of ['', 'x'.repeat(256), ' a', 'a ', 'a\nb', 'a\u007fb', 'a\u0000', '\ud800', 1]) {
    t.same(errorsOf(() => parseProfileChanges({ userId: bad })), [{ path: '/userId', message: FIELD_MESSAGES.userId }], JSON.stringify(bad))
  }
})

t.test('unknown fields and non-objects are refused, every offending field listed', async (t) => {
  t.same(errorsOf(() => parseProfileChanges({ user_id: 'x', name: 1, foo: 2 })).map((e) => e.path), ['/user_id', '/name', '/foo'])
  t.same(errorsOf(() => parseProfileChanges(null)), [{ path: '', message: FIELD_MESSAGES.object }])
  t.same(errorsOf(() => parseProfileChanges([])), [{ path: '', message: FIELD_MESSAGES.object }])
  t.same(parseProfileChanges({}), {})
  t.same(parseProfileChanges({ name: undefined }), {}, 'undefined is absent')
})

t.test('create needs an email, and says so', async (t) => {
  try {
    parseNewUser({ name: 1 })
    t.fail('should throw')
  } catch (error) {
    t.ok(error instanceof ValidationError)
    t.equal((error as ValidationError).message, 'missing required fields')
    t.same((error as ValidationError).errors.map((e) => e.path), ['/name', '/email'])
  }
  t.equal(parseNewUser({ email: 'a@b.co' }).email, 'a@b.co')
})

t.test('no-op detection: unchanged values keep updated_at and the version', async (t) => {
  t.equal(applyProfileChanges(user, {}, 99), user)
  t.equal(applyProfileChanges(user, { name: 'Ada', email: 'ada@example.com', userId: 'ada', metadata: { plan: 'free' } }, 99), user)
  t.equal(applyProfileChanges(user, { metadata: { gone: null } }, 99), user, 'removing an absent key changes nothing')
  const renamed = applyProfileChanges(user, { name: 'Ada L' }, 99)
  t.not(renamed, user)
  t.match(renamed, { name: 'Ada L', updatedAt: 99, version: 2, createdAt: 1 })
  t.match(applyProfileChanges(user, { email: 'ADA@example.com' }, 5), { email: 'ADA@example.com', version: 2 }, 'a change of case is a change')
  t.match(applyProfileChanges(user, { name: null }, 5), { name: null, version: 2 })
  t.match(applyProfileChanges(user, { metadata: null }, 5), { metadata: {}, version: 2 })
  t.equal(applyProfileChanges({ ...user, metadata: {} }, { metadata: null }, 5).version, 1, 'clearing empty metadata is a no-op')
})

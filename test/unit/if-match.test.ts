import t from 'tap'
import { ifMatchAllows, ifNoneMatchAllows, parseIfMatch, parseIfNoneMatch } from '../../src/domain/if-match.js'

t.test('If-Match: * or a list of entity tags, strong comparison', async (t) => {
  const tag = '"1_abcde.3"'
  t.ok(ifMatchAllows(parseIfMatch('*')!, tag))
  t.ok(ifMatchAllows(parseIfMatch(tag)!, tag))
  t.ok(ifMatchAllows(parseIfMatch(`"other", ${tag}`)!, tag))
  t.ok(ifMatchAllows(parseIfMatch(` "x" ,, ${tag} `)!, tag))
  t.notOk(ifMatchAllows(parseIfMatch(`W/${tag}`)!, tag), 'a weak tag never matches')
  t.notOk(ifMatchAllows(parseIfMatch('"1_abcde.2"')!, tag))
  t.same(parseIfMatch('"a,b"'), { any: false, strongTags: ['"a,b"'] }, 'a comma may sit inside a tag')
  for (const bad of ['', ' ', 'abc', '"unterminated', '"a" "b"', '**', '* , "a"', '"a"x', 'W/abc', '"a"b"', ',']) {
    t.equal(parseIfMatch(bad), undefined, JSON.stringify(bad))
  }
})

t.test('If-None-Match: * or a list of entity tags, weak comparison', async (t) => {
  const tag = '"1_abcde.3"'
  t.notOk(ifNoneMatchAllows(parseIfNoneMatch('*')!, tag), '* matches any user')
  t.notOk(ifNoneMatchAllows(parseIfNoneMatch(tag)!, tag))
  t.notOk(ifNoneMatchAllows(parseIfNoneMatch(`W/${tag}`)!, tag), 'a weak tag matches its strong twin')
  t.notOk(ifNoneMatchAllows(parseIfNoneMatch(` "x" ,, W/${tag} `)!, tag))
  t.ok(ifNoneMatchAllows(parseIfNoneMatch('"1_abcde.2", W/"x"')!, tag))
  t.same(parseIfNoneMatch('W/"a", "b"'), { any: false, opaqueTags: ['"a"', '"b"'] })
  for (const bad of ['', ' ', 'abc', '"unterminated', '"a" "b"', '**', '* , "a"', '"a"x', 'W/abc', '"a"b"', ',']) {
    t.equal(parseIfNoneMatch(bad), undefined, JSON.stringify(bad))
  }
})

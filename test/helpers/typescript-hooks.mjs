// Module hooks that run the tests' TypeScript: each .ts file is transpiled on its own (the
// project's tsconfig sets isolatedModules, so that is exact), with an inline source map for stack
// traces and coverage, and the result is kept in node_modules/.cache, keyed by the source. A test
// process whose files are all cached never loads the compiler. tap's own TypeScript plugin
// (ts-node) loaded the compiler into every test process and transpiled every file again, about
// 1 s of CPU per test file. No type check here: `npm run typecheck` (tsc) is that.
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const CACHE = join(ROOT, 'node_modules', '.cache', 'klaim-typescript')
// The compiler's version and these options are part of every cache key. The target is the
// project's (tsconfig.json); the output is ES modules, as package.json's "type" makes them.
const COMPILER = JSON.parse(readFileSync(require.resolve('typescript/package.json'), 'utf8')).version
const { target } = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8')).compilerOptions
const OPTIONS = { target, module: 'ESNext', verbatimModuleSyntax: true, inlineSourceMap: true, inlineSources: true }
const SALT = JSON.stringify([COMPILER, OPTIONS])

let typescript
let converted
/** The file as JavaScript; throws on a syntax error (transpiling alone finds no other kind) or a bad option. */
function transpile (path, source) {
  typescript ??= require('typescript')
  const { convertCompilerOptionsFromJson, formatDiagnostics, sys } = typescript
  // As tsc reads a tsconfig's options (its names, in any case, to the compiler's values); once.
  converted ??= convertCompilerOptionsFromJson(OPTIONS, ROOT)
  const { options: compilerOptions, errors } = converted
  const { outputText, diagnostics = [] } = errors.length > 0
    ? { diagnostics: errors }
    : typescript.transpileModule(source, { compilerOptions, fileName: path, reportDiagnostics: true })
  if (diagnostics.length > 0) {
    throw new SyntaxError(formatDiagnostics(diagnostics, { getCanonicalFileName: (f) => f, getCurrentDirectory: () => ROOT, getNewLine: () => sys.newLine }))
  }
  return outputText
}

function compiled (path) {
  const source = readFileSync(path, 'utf8')
  // The output names the file by its base name only (its source map's `sources`), so the key
  // holds the path from the project's root: another copy of the tree can use the same cache
  // (.ci/run's runs on other versions of Node do).
  const key = createHash('sha256').update(SALT).update('\0').update(relative(ROOT, path)).update('\0').update(source).digest('hex')
  const file = join(CACHE, `${key}.js`)
  try {
    return readFileSync(file, 'utf8')
  } catch {
    const output = transpile(path, source)
    // Written aside, then renamed: test processes running side by side never read half a file.
    mkdirSync(CACHE, { recursive: true })
    const partial = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}`
    writeFileSync(partial, output)
    renameSync(partial, file)
    return output
  }
}

/** `./x.js` from a TypeScript file names `./x.ts` when that exists (tsc's NodeNext rule). */
export function resolve (specifier, context, nextResolve) {
  if (context.parentURL?.endsWith('.ts') && specifier.endsWith('.js') && /^\.{1,2}\//.test(specifier)) {
    const url = new URL(`${specifier.slice(0, -3)}.ts`, context.parentURL)
    if (existsSync(url)) return { url: url.href, format: 'module', shortCircuit: true }
  }
  return nextResolve(specifier, context)
}

export function load (url, context, nextLoad) {
  if (!url.startsWith('file:') || !url.endsWith('.ts')) return nextLoad(url, context)
  return { format: 'module', source: compiled(fileURLToPath(url)), shortCircuit: true }
}

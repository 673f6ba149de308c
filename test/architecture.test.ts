import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import t from 'tap'

const SRC = resolve(import.meta.dirname, '..', 'src')

function sources (folder: string): string[] {
  return readdirSync(folder, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => join(e.parentPath, e.name))
}

/** Every module specifier of `import … from`, `export … from`, bare `import '…'`, `import(…)` and `require(…)`. */
function importsOf (text: string): string[] {
  return [...text.matchAll(/\b(?:from|import|require)\s*\(?\s*['"]([^'"]+)['"]/g)].map((m) => m[1] ?? '')
}

/** Where an import lands: the top folder of src/ for a relative one, else the package. */
function target (file: string, specifier: string): string {
  if (!specifier.startsWith('.')) return `package:${specifier}`
  return relative(SRC, resolve(dirname(file), specifier)).split('/')[0] ?? ''
}

// Arrows point inward: domain imports only itself; application only domain and itself.
const ALLOWED: Record<string, string[]> = { domain: ['domain'], application: ['domain', 'application'] }

for (const [layer, allowed] of Object.entries(ALLOWED)) {
  t.test(`src/${layer} imports only ${allowed.join(' and ')}`, async (t) => {
    const files = sources(join(SRC, layer))
    t.ok(files.length > 0)
    for (const file of files) {
      for (const specifier of importsOf(readFileSync(file, 'utf8'))) {
        t.ok(allowed.includes(target(file, specifier)), `${relative(SRC, file)} imports ${specifier}`)
      }
    }
  })
}

t.test('the check would catch a framework, a driver or an adapter', async (t) => {
  const probe = 'import { x } from "kysely"\nimport type { Y } from \'fastify\'\nexport { z } from "../adapters/http/app.js"\nimport "pg"\nawait import("node:fs")\nrequire(\'ajv\')'
  t.same(importsOf(probe), ['kysely', 'fastify', '../adapters/http/app.js', 'pg', 'node:fs', 'ajv'])
  const inDomain = join(SRC, 'domain', 'probe.ts')
  t.same(importsOf(probe).map((s) => target(inDomain, s)), ['package:kysely', 'package:fastify', 'adapters', 'package:pg', 'package:node:fs', 'package:ajv'])
  t.notOk(ALLOWED.domain?.includes(target(inDomain, '../adapters/http/app.js')))
})

/** The package an import names: `@scope/name` or `name`, without a subpath. */
function packageOf (specifier: string): string {
  return specifier.split('/').slice(0, specifier.startsWith('@') ? 2 : 1).join('/')
}

const PRODUCTION = Object.keys((JSON.parse(readFileSync(resolve(SRC, '..', 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies)

// `npm install klaim-users` and the Docker image install `dependencies` only: an import of a dev
// dependency in src/ works in this repository and fails for every user of the package.
t.test('src imports only Node\'s built-ins and the production dependencies', async (t) => {
  const files = sources(SRC)
  t.ok(files.length > 0)
  for (const file of files) {
    for (const specifier of importsOf(readFileSync(file, 'utf8'))) {
      if (specifier.startsWith('.') || specifier.startsWith('node:')) continue
      t.ok(PRODUCTION.includes(packageOf(specifier)), `${relative(SRC, file)} imports ${specifier}`)
    }
  }
  t.same(['@sinclair/typebox/value', 'kysely', 'tap'].map(packageOf), ['@sinclair/typebox', 'kysely', 'tap'])
  t.notOk(PRODUCTION.includes('tap'), 'the check would catch a dev dependency')
})

// Kysely and TypeBox run from their CommonJS builds, loaded in one module each (see
// src/adapters/persistence/kysely.ts); a value imported from the package anywhere else would
// load the 250-file ES module build beside it. Types may come from the package: they are erased.
const COMMONJS_ONLY = /\b(?:import|export)\s+(?!type\b)[^'";]*?\bfrom\s*['"](kysely|@sinclair\/typebox(?:\/[^'"]*)?)['"]/g
const LOADERS = ['adapters/persistence/kysely.ts', 'typebox.ts']

t.test('src takes Kysely\'s and TypeBox\'s values only from the modules that load their CommonJS builds', async (t) => {
  for (const file of sources(SRC)) {
    if (LOADERS.includes(relative(SRC, file))) continue
    const found = [...readFileSync(file, 'utf8').matchAll(COMMONJS_ONLY)].map((m) => m[1])
    t.same(found, [], relative(SRC, file))
  }
  const probe = 'import type { Kysely } from \'kysely\'\nimport { sql, type Kysely } from \'kysely\'\nimport {\n  Value\n} from "@sinclair/typebox/value"\nexport { Type } from \'@sinclair/typebox\'\nexport type { Static } from \'@sinclair/typebox\''
  t.same([...probe.matchAll(COMMONJS_ONLY)].map((m) => m[1]), ['kysely', '@sinclair/typebox/value', '@sinclair/typebox'], 'the check would catch a value import')
})

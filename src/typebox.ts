// TypeBox's values (`Type`, `Value`), loaded from its CommonJS build, as Kysely's are and for the
// same reason (adapters/persistence/kysely.ts): 115 against 160 ms to load, 125 against 450 under
// a loader hook. Its types still come from the package (`import type … from '@sinclair/typebox'`).
import { createRequire } from 'node:module'
import type * as TypeBox from '@sinclair/typebox'
import type * as TypeBoxValue from '@sinclair/typebox/value'

const require = createRequire(import.meta.url)

export const { Type } = require('@sinclair/typebox') as typeof TypeBox
export const { Value } = require('@sinclair/typebox/value') as typeof TypeBoxValue

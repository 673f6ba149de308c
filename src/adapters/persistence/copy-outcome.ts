// What a copy (see copy-database.ts) answers, apart from it: the package's declarations of these
// name no Kysely type, so a host's compiler need not load Kysely's (see test/package.test.ts).

export interface CopiedCounts {
  apps: number
  keys: number
  users: number
  /** Answers stored for `Idempotency-Key`s, still replayable. */
  storedResponses: number
}

/**
 * Nothing was copied: the target cannot be opened, or has data already (a copy goes into an
 * empty database only, so nothing is merged or overwritten).
 */
export class CopyRefused extends Error {}

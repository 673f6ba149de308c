// What a copy (see copy-database.ts) answers, and a running server's mark that keeps copies off
// (see server-registry.ts), apart from them: the package's declarations of these name no Kysely
// type, so a host's compiler need not load Kysely's (see test/package.test.ts).

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

/**
 * A process that serves the database, marked in it so that a copy refuses while it runs (a copy
 * would miss what it writes). `stop()` removes the mark; a process that ends without it (a
 * crash) stops counting once its heartbeats have stopped for 30 s.
 */
export interface ServerAnnouncement {
  stop(): Promise<void>
}

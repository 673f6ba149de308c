// What the persistence adapters give a host (see src/index.ts), apart from them: a copy's counts
// and refusal (copy-database.ts), a running server's mark (server-registry.ts), a read snapshot
// that ended (read-snapshot.ts). The package's declarations of these name no Kysely type, so a
// host's compiler need not load Kysely's (see test/package.test.ts), and the CLI loads them
// without Kysely.

export interface CopiedCounts {
  apps: number
  keys: number
  users: number
  /** Answers stored for `Idempotency-Key`s, still replayable. */
  storedResponses: number
}

/**
 * Nothing was copied: the target cannot be opened, or has data already (a copy goes into an
 * empty database only, so nothing is merged or overwritten), or a server runs on the source.
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

/** A read of a snapshot (an export's, a copy's) that ended after 10 minutes without a read: its reader stopped reading. */
export class SnapshotEnded extends Error {}

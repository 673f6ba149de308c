// The options of `openPersistence` and the gauges it hands out, apart from the adapters
// themselves: the package's published declarations (openUsersService's) name these, and so
// need neither Kysely's nor pg's.

/** SQLite's `synchronous` setting: NORMAL (the default) or FULL (see the README's Durability). */
export type SqliteSynchronous = 'NORMAL' | 'FULL'

export interface PersistenceOptions {
  databaseUrl: string
  poolMax?: number
  /**
   * How long a statement waits for a lock another transaction holds before failing as
   * unavailable (default 5000 ms): on PostgreSQL a lock left by a vanished client, on SQLite the
   * write lock of another process on the file (a long CLI command, a `VACUUM`). Neither can hold
   * requests, and with them the pool's connections, indefinitely. 0: no limit.
   */
  lockTimeoutMs?: number
  /**
   * PostgreSQL only: how long a statement may run before the server cancels it (default 15000
   * ms); the client gives up on the connection a second later, as after a network partition.
   * Either way the request fails as unavailable. 0: no limit.
   */
  postgresStatementTimeoutMs?: number
  sqliteSynchronous?: SqliteSynchronous
  /**
   * Hears of a database connection that failed and is replaced: on PostgreSQL an idle one of the
   * pool, or the pipelined one (see `postgresPipeline`); on a SQLite file the one of the
   * statement thread (see `SqliteThread`), started again at once or, as the error says, within
   * `sqliteThreadRestartIntervalMs`.
   */
  onPoolError?: (error: Error) => void
  /**
   * PostgreSQL only: send the prepared statements run outside transactions (the hot path of
   * every read and update) on one pipelined connection, beside the pool (default true; see
   * `PostgresPipeline`). false: every statement goes through the pool.
   */
  postgresPipeline?: boolean
  /**
   * SQLite only: checkpoint the WAL from a worker thread, off the event loop, reporting failures
   * here. For long-running servers; off by default (a one-shot command has no use for it).
   */
  sqliteBackgroundCheckpoints?: { onError: (error: Error) => void }
  /**
   * SQLite file only: the least time between two starts of the statement thread when it keeps
   * stopping (default 60000 ms, a minute; at least 1000; see `SqliteDriver.startThread`).
   */
  sqliteThreadRestartIntervalMs?: number
  /** Apply pending migrations first (default true). */
  migrate?: boolean
}

/**
 * What a PostgreSQL pool tells about its connections (pg's `Pool` has them). Typed here rather
 * than as `pg.Pool` so that the package's declarations need no `@types/pg`, a dev dependency.
 */
export interface PoolGauges {
  readonly totalCount: number
  readonly idleCount: number
  readonly waitingCount: number
}

/**
 * What the pipelined PostgreSQL connection tells (see `PostgresPipeline`), typed here for the
 * same reason as PoolGauges.
 */
export interface PipelineGauges {
  /** Whether the connection is open now. */
  readonly open: boolean
  /**
   * Statements handed to the pool since start: after a lock wait past the timeout, for want of a
   * connection, or because they were sent behind a Parse of theirs that failed.
   */
  readonly handedToPool: { readonly lockWait: number, readonly noConnection: number, readonly notPrepared: number }
}

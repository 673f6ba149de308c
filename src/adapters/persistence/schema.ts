import type { ColumnType, Generated } from 'kysely'

// PostgreSQL returns int8 as a string and jsonb as an object; SQLite returns numbers and text.
type Millis = ColumnType<number | string, number, number>

export interface AppsTable {
  id: string
  name: string
  created_at: Millis
}

export interface ApiKeysTable {
  id: string
  app_id: string
  key_hash: string
  prefix: string
  created_at: Millis
  revoked_at: ColumnType<number | string | null, number | null, number | null>
}

export interface UsersTable {
  klaim_id: string
  app_id: string
  user_id: string
  email: string
  /** The email as folded by the domain (`emailKey`), under a unique index per app. */
  email_key: string
  name: string | null
  metadata: ColumnType<string | object, string, string>
  credit_balance: ColumnType<number | string, number, number>
  acquisition_source: string
  created_at: Millis
  updated_at: Millis
  version: Generated<number>
}

export interface IdempotencyKeysTable {
  scope: string
  key: string
  fingerprint: string
  status: number | null
  body: string | null
  /** JSON object of the stored response headers. */
  headers: string | null
  locked_until: Millis
  expires_at: Millis
}

export interface RateLimitsTable {
  bucket: string
  /** The start of the window the hits count in. */
  window_start: Millis
  hits: number
}

export interface ServersTable {
  /** Random, one per server process. */
  id: string
  host: string
  pid: number
  /** By the database's clock, as `seen_at`. */
  started_at: Millis
  /** When the server last wrote that it runs (a heartbeat), by the database's clock. */
  seen_at: Millis
}

/** Things that happened once in the database's life (see migration 0005). */
export interface MilestonesTable {
  /** 'first-app': the database has held an app. */
  name: 'first-app'
  reached_at: Millis
}

export interface DatabaseSchema {
  apps: AppsTable
  api_keys: ApiKeysTable
  users: UsersTable
  idempotency_keys: IdempotencyKeysTable
  rate_limits: RateLimitsTable
  servers: ServersTable
  milestones: MilestonesTable
}

import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import type { ServerAnnouncement } from './exported.js'
import type { DialectName } from './database-url.js'
import { sql, type Kysely } from './kysely.js'
import type { DatabaseSchema } from './schema.js'

/** How often a running server writes that it runs. */
export const HEARTBEAT_MS = 10_000

/**
 * A server not heard from for this long is taken as gone: stopped without removing its row (a
 * crash, `kill -9`, a host lost). Three heartbeats, so a slow write or two does not hide one.
 */
export const GONE_AFTER_MS = 3 * HEARTBEAT_MS

/** A server seen running on the database. */
export interface RunningServer {
  host: string
  pid: number
  /** How long before `now` it last wrote that it runs, in ms. */
  seenAgoMs: number
}

/**
 * The database's clock, in epoch ms: every time here is written and compared by it, so servers on
 * several hosts need not agree on the time. (`now()` in PostgreSQL is the transaction's start.)
 * Typed as written; PostgreSQL reads an int8 back as a string, so reads go through `Number`.
 */
function databaseClock (dialect: DialectName) {
  return dialect === 'postgres'
    ? sql<number>`(extract(epoch from clock_timestamp()) * 1000)::bigint`
    : sql<number>`cast((julianday('now') - 2440587.5) * 86400000 as integer)`
}

/** The database's time now, in epoch ms. */
export async function databaseNow (db: Kysely<DatabaseSchema>, dialect: DialectName): Promise<number> {
  const { now } = await db.selectNoFrom(databaseClock(dialect).as('now')).executeTakeFirstOrThrow()
  return Number(now)
}

/**
 * Writes a row for this process in `servers` now, and its time seen every HEARTBEAT_MS until
 * `stop()` deletes it (see ServerAnnouncement); first, it deletes the rows of servers gone. A
 * write that fails is told to `onError` and made again at the next heartbeat, which writes the
 * whole row: a server whose row went (a database restored, a failover) is seen again within one
 * heartbeat.
 */
export async function announceServer (
  db: Kysely<DatabaseSchema>,
  dialect: DialectName,
  { onError = () => {}, heartbeatMs = HEARTBEAT_MS }: { onError?: (error: Error) => void, heartbeatMs?: number } = {}
): Promise<ServerAnnouncement & { beat: () => Promise<void> }> {
  const id = randomUUID()
  const now = databaseClock(dialect)
  const row = { id, host: hostname(), pid: process.pid, started_at: now, seen_at: now }
  let writing: Promise<void> | undefined
  let stopped = false
  const tell = (error: unknown): void => { onError(error instanceof Error ? error : new Error(String(error))) }
  const write = async (): Promise<void> => {
    await db.insertInto('servers').values(row).onConflict((oc) => oc.column('id').doUpdateSet({ seen_at: now })).execute().catch(tell)
  }
  // One write at a time: a heartbeat due while the last one still waits (a slow database) is skipped.
  const beat = async (): Promise<void> => { if (!stopped) await (writing ??= write().finally(() => { writing = undefined })) }
  // The rows of servers gone without a word (a crash), which count no more: each start clears them.
  await db.deleteFrom('servers').where('seen_at', '<', sql<number>`${now} - ${GONE_AFTER_MS}`).execute()
    .catch(tell)
  await beat()
  const timer = setInterval(() => { beat().catch(onError) }, heartbeatMs).unref()
  return {
    beat,
    stop: async () => {
      if (stopped) return
      stopped = true
      clearInterval(timer)
      // A heartbeat on its way would write the row again after the delete.
      await writing
      await db.deleteFrom('servers').where('id', '=', id).execute()
    }
  }
}

/** The servers seen on the database since `since` (epoch ms, by its clock), longest running first. */
export async function serversSeenSince (db: Kysely<DatabaseSchema>, dialect: DialectName, since: number): Promise<RunningServer[]> {
  const rows = await db.selectFrom('servers')
    .select(['host', 'pid', sql<number>`${databaseClock(dialect)} - seen_at`.as('seen_ago')])
    .where('seen_at', '>', since)
    .orderBy('started_at').orderBy('id')
    .execute()
  return rows.map((r) => ({ host: r.host, pid: r.pid, seenAgoMs: Math.max(0, Number(r.seen_ago)) }))
}

/** "host pid 123, seen 2 s ago; host pid 456, seen 0 s ago", for messages. */
export function describeServers (servers: RunningServer[]): string {
  return servers.map((s) => `${s.host} pid ${s.pid}, seen ${Math.round(s.seenAgoMs / 1000)} s ago`).join('; ')
}

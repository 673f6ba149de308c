import { CopyRefused, type CopiedCounts } from './exported.js'
import { parseDatabaseUrl } from './database-url.js'
import { rowToUser, USER_COLUMNS, userToRow } from './kysely-user-repository.js'
import { sql, type Kysely } from './kysely.js'
import { openPersistence, type Persistence } from './open-persistence.js'
import type { DatabaseSchema } from './schema.js'
import { databaseNow, describeServers, GONE_AFTER_MS, serversSeenSince } from './server-registry.js'

/** Rows read and written at a time (12 columns a user: 12,000 parameters, under both databases' limits). */
export const COPY_BATCH = 1000

/** Opens (and migrates) the database at `targetUrl`, copies `source` into it (see copyDatabase), and closes it. */
export async function copyDatabaseTo (source: Persistence, targetUrl: string, now: number): Promise<CopiedCounts> {
  const location = parseDatabaseUrl(targetUrl)
  if (location?.dialect === 'sqlite' && location.filename === ':memory:') throw new CopyRefused('an in-memory database would end with the copy: copy into a file or PostgreSQL')
  const target = await openPersistence({ databaseUrl: targetUrl, poolMax: 2 }).catch((error: unknown) => {
    throw new CopyRefused(`cannot open the target database (${error instanceof Error ? error.message : String(error)})`, { cause: error })
  })
  try {
    return await copyDatabase(source, target, now)
  } finally {
    await target.close()
  }
}

/**
 * Copies every app, API key (its hash: the keys work as they did), user (its klaim_id, version
 * and times: ETags stay valid) and stored answer not yet expired at `now` (a retry after the move
 * is answered as it would have been) from `source` to `target`, which must have no app. The
 * source is read in one snapshot (see Transactor.readSnapshot), so the copy is of one moment,
 * and it refuses while a server runs on the source (see announceServer), before it begins and
 * again at its end: what a server writes after that moment would not be in the copy. The target
 * is written in one transaction: a copy that fails or is refused leaves it as it was. Rate-limit
 * windows are not copied (they last a minute). Between SQLite and PostgreSQL either way: a user
 * is read and written as the repositories do (`rowToUser`, `userToRow`); the other rows' times
 * become numbers. A PostgreSQL target's tables are then analyzed.
 */
export async function copyDatabase (source: Persistence, target: Persistence, now: number): Promise<CopiedCounts> {
  // A server seen since then is running, or was while this copy read (its heartbeats land later).
  const since = await databaseNow(source.db, source.location.dialect) - GONE_AFTER_MS
  await refuseWhileServed(source, since, 'before')
  const snapshot = await source.openSnapshot()
  let counts: CopiedCounts
  try {
    counts = await target.db.transaction().execute(async (trx) => {
      if (await trx.selectFrom('apps').select('id').limit(1).executeTakeFirst() !== undefined) {
        throw new CopyRefused('the target database has apps already: copy into an empty one')
      }
      const from = snapshot.db
      const apps = (await from.selectFrom('apps').selectAll().orderBy('id').execute()).map((a) => ({ ...a, created_at: Number(a.created_at) }))
      if (apps.length > 0) await trx.insertInto('apps').values(apps).execute()
      // That the source has held an app, even if none is left: its next start must not create one.
      const milestones = (await from.selectFrom('milestones').selectAll().execute()).map((m) => ({ ...m, reached_at: Number(m.reached_at) }))
      if (milestones.length > 0) {
        await trx.insertInto('milestones').values(milestones).onConflict((oc) => oc.column('name').doNothing()).execute()
      }
      const keys = (await from.selectFrom('api_keys').selectAll().orderBy('id').execute())
        .map((k) => ({ ...k, created_at: Number(k.created_at), revoked_at: k.revoked_at === null ? null : Number(k.revoked_at) }))
      for (let i = 0; i < keys.length; i += COPY_BATCH) await trx.insertInto('api_keys').values(keys.slice(i, i + COPY_BATCH)).execute()
      const users = await copyUsers(from, trx)
      const storedResponses = await copyStoredResponses(from, trx, now)
      // Closed first (closing again below does nothing): on in-memory SQLite the snapshot holds
      // the one connection the check needs.
      await snapshot.close()
      await refuseWhileServed(source, since, 'after')
      return { apps: apps.length, keys: keys.length, users, storedResponses }
    })
  } finally {
    await snapshot.close()
  }
  // PostgreSQL has no statistics of tables filled in one transaction until autovacuum's next pass
  // (up to a minute); the planner would plan the first requests on guesses. The copy stands
  // whatever this does: if it fails, autovacuum gathers them all the same.
  if (target.location.dialect === 'postgres') {
    await sql`analyze apps, api_keys, users, idempotency_keys, milestones`.execute(target.db).catch(() => {})
  }
  return counts
}

async function refuseWhileServed (source: Persistence, since: number, when: 'before' | 'after'): Promise<void> {
  const servers = await serversSeenSince(source.db, source.location.dialect, since)
  if (servers.length === 0) return
  const one = servers.length === 1
  throw new CopyRefused(when === 'before'
    ? `${one ? 'a server is' : `${servers.length} servers are`} running on the source database (${describeServers(servers)}): stop ${one ? 'it' : 'them'} first`
    : `${one ? 'a server' : `${servers.length} servers`} started on the source database while copying (${describeServers(servers)}): stop ${one ? 'it' : 'them'}, and copy again`)
}

async function copyUsers (from: Kysely<DatabaseSchema>, to: Kysely<DatabaseSchema>): Promise<number> {
  let copied = 0
  let after: string | undefined
  for (;;) {
    const page = from.selectFrom('users').select(USER_COLUMNS)
    const rows = await (after === undefined ? page : page.where('klaim_id', '>', after)).orderBy('klaim_id').limit(COPY_BATCH).execute()
    if (rows.length === 0) return copied
    // Read and written as the repositories read and write a user, whichever the two databases.
    await to.insertInto('users').values(rows.map((row) => userToRow(rowToUser(row)))).execute()
    copied += rows.length
    after = rows[rows.length - 1]?.klaim_id
  }
}

/** Only answers: a key whose first request was still running has none, and its retry runs afresh. */
async function copyStoredResponses (from: Kysely<DatabaseSchema>, to: Kysely<DatabaseSchema>, now: number): Promise<number> {
  let copied = 0
  let after: { scope: string, key: string } | undefined
  for (;;) {
    let page = from.selectFrom('idempotency_keys').selectAll().where('status', 'is not', null).where('expires_at', '>', now)
    if (after !== undefined) {
      const { scope, key } = after
      page = page.where((eb) => eb.or([eb('scope', '>', scope), eb.and([eb('scope', '=', scope), eb('key', '>', key)])]))
    }
    const rows = await page.orderBy('scope').orderBy('key').limit(COPY_BATCH).execute()
    if (rows.length === 0) return copied
    await to.insertInto('idempotency_keys').values(rows.map((r) => ({ ...r, locked_until: Number(r.locked_until), expires_at: Number(r.expires_at) }))).execute()
    copied += rows.length
    after = rows[rows.length - 1]
  }
}

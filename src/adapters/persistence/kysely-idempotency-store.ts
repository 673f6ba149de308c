import type { Kysely, Selectable } from 'kysely'
import type { IdempotencyRecord, IdempotencyStore } from '../../application/ports.js'
import { deleteInBatches, DELETE_BATCH, pauseSince } from './batches.js'
import type { DialectName } from './database-url.js'
import { sql } from './kysely.js'
import { prepare } from './prepared.js'
import type { DatabaseSchema, IdempotencyKeysTable } from './schema.js'

function toRecord (row: Selectable<IdempotencyKeysTable>): IdempotencyRecord {
  return {
    fingerprint: row.fingerprint,
    response: row.status === null
      ? undefined
      : { status: row.status, body: row.body ?? '', headers: JSON.parse(row.headers ?? '{}') as Record<string, string> },
    lockedUntil: Number(row.locked_until),
    expiresAt: Number(row.expires_at)
  }
}

const COLUMNS = ['scope', 'key', 'fingerprint', 'status', 'body', 'headers', 'locked_until', 'expires_at'] as const

/**
 * The statements every keyed request runs, compiled once per database (see `prepare`); the
 * parameters of each follow its placeholders. Columns are named, not `*`, as in the users' queries.
 * With them, `bodyHolds`, the one condition whose SQL depends on the dialect (an erasure's).
 */
export function compileIdempotencyQueries (db: Kysely<DatabaseSchema>, dialect: DialectName) {
  const byKey = db.selectFrom('idempotency_keys').where('scope', '=', '').where('key', '=', '')
  return {
    /** The condition that `body` holds `text`, case and all (SQLite's LIKE ignores ASCII case). */
    bodyHolds: (text: string) => dialect === 'postgres' ? sql<boolean>`strpos(body, ${text}) > 0` : sql<boolean>`instr(body, ${text}) > 0`,
    /** [scope, key, fingerprint, locked_until, expires_at] */
    claim: prepare(db.insertInto('idempotency_keys')
      .values({ scope: '', key: '', fingerprint: '', locked_until: 0, expires_at: 0 })
      // ON CONFLICT DO NOTHING: of two racing first requests exactly one inserts.
      .onConflict((oc) => oc.columns(['scope', 'key']).doNothing())
      .returning('key')),
    /** [scope, key] */
    find: prepare(byKey.select(COLUMNS)),
    /** [status, body, headers, scope, key, locked_until] */
    complete: prepare(db.updateTable('idempotency_keys')
      .set({ status: 0, body: '', headers: '' })
      .where('scope', '=', '').where('key', '=', '').where('locked_until', '=', 0).where('status', 'is', null)),
    /** [scope, key, locked_until] */
    release: prepare(db.deleteFrom('idempotency_keys')
      .where('scope', '=', '').where('key', '=', '').where('locked_until', '=', 0).where('status', 'is', null))
  }
}

export type IdempotencyQueries = ReturnType<typeof compileIdempotencyQueries>

/** The `IdempotencyStore` port on `db` (the pool, or a transaction). */
export function kyselyIdempotencyStore (db: Kysely<DatabaseSchema>, queries: IdempotencyQueries): IdempotencyStore {
  return {
    async claim (scope, key, record) {
      const inserted = await queries.claim(db, [scope, key, record.fingerprint, record.lockedUntil, record.expiresAt])
      if (inserted.rows.length > 0) return undefined
      // Deleted between the two statements (released or purged): claim it again.
      return await this.find(scope, key) ?? await this.claim(scope, key, record)
    },

    async find (scope, key) {
      const row = (await queries.find(db, [scope, key])).rows[0]
      return row === undefined ? undefined : toRecord(row)
    },

    async takeOver (scope, key, previous, record) {
      const result = await db.updateTable('idempotency_keys')
        .set({ fingerprint: record.fingerprint, status: null, body: null, headers: null, locked_until: record.lockedUntil, expires_at: record.expiresAt })
        .where('scope', '=', scope).where('key', '=', key)
        .where('locked_until', '=', previous.lockedUntil).where('expires_at', '=', previous.expiresAt)
        .executeTakeFirst()
      return result.numUpdatedRows > 0n
    },

    async complete (scope, key, lockedUntil, response) {
      const result = await queries.complete(db, [response.status, response.body, JSON.stringify(response.headers), scope, key, lockedUntil])
      return (result.numAffectedRows ?? 0n) > 0n
    },

    async release (scope, key, lockedUntil) {
      await queries.release(db, [scope, key, lockedUntil])
    },

    async deleteAnswersHolding (scopes, text) {
      let deleted = 0
      for (const scope of scopes) {
        // Key by key in the primary key's order: a window of keys, then a DELETE within it.
        let after = ''
        for (;;) {
          const started = performance.now()
          const window = await db.selectFrom('idempotency_keys').select('key').where('scope', '=', scope).where('key', '>', after)
            .orderBy('key').limit(DELETE_BATCH).execute()
          const last = window.at(-1)?.key
          if (last === undefined) break
          const result = await db.deleteFrom('idempotency_keys').where('scope', '=', scope).where('key', '>', after).where('key', '<=', last)
            .where(queries.bodyHolds(text)).executeTakeFirst()
          deleted += Number(result.numDeletedRows)
          if (window.length < DELETE_BATCH) break
          after = last
          await pauseSince(started)
        }
      }
      return deleted
    },

    async purgeExpired (now) {
      return await deleteInBatches(async () => await db.deleteFrom('idempotency_keys')
        .where((eb) => eb(eb.refTuple('scope', 'key'), 'in',
          eb.selectFrom('idempotency_keys').select(['scope', 'key']).where('expires_at', '<=', now).limit(DELETE_BATCH).$asTuple('scope', 'key')))
        .executeTakeFirst())
    }
  }
}

import type { Kysely, Selectable } from 'kysely'
import type { IdempotencyRecord, IdempotencyStore } from '../../application/ports.js'
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

/**
 * Expired keys are deleted this many at a time. An hour of keyed requests can be millions of
 * rows: deleted at once on SQLite, that holds the event loop and the file's write lock for
 * seconds (about 0.5 s per 200,000 rows here); in batches, a few milliseconds at a time.
 */
const PURGE_BATCH = 1000

/** The `IdempotencyStore` port on `db` (the pool, or a transaction). */
export function kyselyIdempotencyStore (db: Kysely<DatabaseSchema>): IdempotencyStore {
  return {
    async claim (scope, key, record) {
      // ON CONFLICT DO NOTHING: of two racing first requests exactly one inserts.
      const inserted = await db.insertInto('idempotency_keys')
        .values({ scope, key, fingerprint: record.fingerprint, locked_until: record.lockedUntil, expires_at: record.expiresAt })
        .onConflict((oc) => oc.columns(['scope', 'key']).doNothing())
        .returning('key').executeTakeFirst()
      if (inserted !== undefined) return undefined
      // Deleted between the two statements (released or purged): claim it again.
      return await this.find(scope, key) ?? await this.claim(scope, key, record)
    },

    async find (scope, key) {
      const row = await db.selectFrom('idempotency_keys').selectAll().where('scope', '=', scope).where('key', '=', key).executeTakeFirst()
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
      const result = await db.updateTable('idempotency_keys')
        .set({ status: response.status, body: response.body, headers: JSON.stringify(response.headers) })
        .where('scope', '=', scope).where('key', '=', key).where('locked_until', '=', lockedUntil).where('status', 'is', null)
        .executeTakeFirst()
      return result.numUpdatedRows > 0n
    },

    async release (scope, key, lockedUntil) {
      await db.deleteFrom('idempotency_keys')
        .where('scope', '=', scope).where('key', '=', key).where('locked_until', '=', lockedUntil).where('status', 'is', null)
        .execute()
    },

    async purgeExpired (now) {
      let purged = 0
      for (;;) {
        const result = await db.deleteFrom('idempotency_keys')
          .where((eb) => eb(eb.refTuple('scope', 'key'), 'in',
            eb.selectFrom('idempotency_keys').select(['scope', 'key']).where('expires_at', '<=', now).limit(PURGE_BATCH).$asTuple('scope', 'key')))
          .executeTakeFirst()
        const deleted = Number(result.numDeletedRows)
        purged += deleted
        if (deleted < PURGE_BATCH) return purged
        // SQLite runs a statement on the event loop: let requests in between batches.
        await new Promise((resolve) => setImmediate(resolve))
      }
    }
  }
}

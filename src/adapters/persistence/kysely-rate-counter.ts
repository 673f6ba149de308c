import type { Kysely } from 'kysely'
import type { RateCounter } from '../../application/ports.js'
import { deleteInBatches, DELETE_BATCH } from './batches.js'
import { prepare } from './prepared.js'
import type { DatabaseSchema } from './schema.js'

/** The statement every counted request runs, compiled once per database (see `prepare`). */
export function compileRateCounterQueries (db: Kysely<DatabaseSchema>) {
  return {
    /**
     * [bucket, window_start]: one statement, atomic in both databases, so that requests counted
     * at once by several processes are each counted once. A later window starts the count again;
     * an earlier one (a clock behind) counts nothing and answers the current window.
     */
    hit: prepare(db.insertInto('rate_limits')
      .values((eb) => ({ bucket: '', window_start: 0, hits: eb.lit(1) }))
      .onConflict((oc) => oc.column('bucket').doUpdateSet((eb) => ({
        hits: eb.case()
          .when('excluded.window_start', '>', eb.ref('rate_limits.window_start')).then(eb.lit(1))
          .when('excluded.window_start', '=', eb.ref('rate_limits.window_start')).then(eb('rate_limits.hits', '+', eb.lit(1)))
          .else(eb.ref('rate_limits.hits'))
          .end(),
        window_start: eb.case()
          .when('excluded.window_start', '>', eb.ref('rate_limits.window_start')).then(eb.ref('excluded.window_start'))
          .else(eb.ref('rate_limits.window_start'))
          .end()
      })))
      .returning(['window_start', 'hits']))
  }
}

export type RateCounterQueries = ReturnType<typeof compileRateCounterQueries>

/** The `RateCounter` port on `db`. */
export function kyselyRateCounter (db: Kysely<DatabaseSchema>, queries: RateCounterQueries): RateCounter {
  return {
    async hit (bucket, windowStart) {
      const row = (await queries.hit(db, [bucket, windowStart])).rows[0]
      if (row === undefined) throw new Error('the rate-limit count returned no row')
      return { windowStart: Number(row.window_start), hits: Number(row.hits) }
    },

    async purge (before) {
      return await deleteInBatches(async () => await db.deleteFrom('rate_limits')
        .where('bucket', 'in', db.selectFrom('rate_limits').select('bucket').where('window_start', '<', before).limit(DELETE_BATCH))
        .executeTakeFirst())
    }
  }
}

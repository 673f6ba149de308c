import type { App, AppRepository, NewKey, StoredKey } from '../../application/ports.js'
import { DELETE_BATCH, deleteInBatches } from './batches.js'
import { rowToUser, type UserRow } from './kysely-user-repository.js'
import { sql, type Kysely } from './kysely.js'
import { prepare } from './prepared.js'
import type { DatabaseSchema } from './schema.js'

const toMillis = (value: number | string | null): number | null => value === null ? null : Number(value)

const toKey = (row: { id: string, app_id: string, key_hash: string, revoked_at: number | string | null }): StoredKey =>
  ({ keyId: row.id, appId: row.app_id, keyHash: row.key_hash, revokedAt: toMillis(row.revoked_at) })

async function insertKey (db: Kysely<DatabaseSchema>, { key, keyHash }: NewKey): Promise<void> {
  await db.insertInto('api_keys').values({
    id: key.keyId, app_id: key.appId, key_hash: keyHash, prefix: key.prefix, created_at: key.createdAt, revoked_at: key.revokedAt
  }).execute()
}

/** Stores `app`, its first key if any, and that the database has held an app (in `db`'s transaction). */
async function insertApp (db: Kysely<DatabaseSchema>, app: App, firstKey?: NewKey): Promise<void> {
  await db.insertInto('apps').values({ id: app.appId, name: app.name, created_at: app.createdAt }).execute()
  await db.insertInto('milestones').values({ name: 'first-app', reached_at: app.createdAt })
    .onConflict((oc) => oc.column('name').doNothing()).execute()
  if (firstKey !== undefined) await insertKey(db, firstKey)
}

// Any constant: the key of the PostgreSQL advisory lock that makes first starts take turns.
const FIRST_APP_LOCK = 0x6b6c6169

/** `dialect` says how a first start excludes others: SQLite's transactions do (BEGIN IMMEDIATE), PostgreSQL's need a lock. */
export function kyselyAppRepository (db: Kysely<DatabaseSchema>, dialect: 'sqlite' | 'postgres'): AppRepository {
  // Run on every request (authentication): compiled once.
  const keyByHash = prepare(db.selectFrom('api_keys').select(['id', 'app_id', 'key_hash', 'revoked_at']).where('key_hash', '=', ''))
  // The same, and the user named in the path: a revoked key joins no user.
  const keyAndUser = prepare(db.selectFrom('api_keys as k')
    .leftJoin('users as u', (join) => join.onRef('u.app_id', '=', 'k.app_id').on('u.user_id', '=', '').on('k.revoked_at', 'is', null))
    .select(['k.id', 'k.app_id', 'k.key_hash', 'k.revoked_at', 'u.klaim_id', 'u.user_id', 'u.email', 'u.name', 'u.metadata',
      'u.credit_balance', 'u.acquisition_source', 'u.created_at', 'u.updated_at', 'u.version'])
    .where('k.key_hash', '=', ''))
  return {
    async insertApp (app, firstKey) {
      await db.transaction().execute(async (trx) => { await insertApp(trx, app, firstKey) })
    },

    async insertFirstApp (app, firstKey, beforeCommit) {
      return await db.transaction().execute(async (trx) => {
        if (dialect === 'postgres') await sql`select pg_advisory_xact_lock(${FIRST_APP_LOCK})`.execute(trx)
        if (await trx.selectFrom('milestones').select('name').where('name', '=', 'first-app').executeTakeFirst() !== undefined) return false
        await insertApp(trx, app, firstKey)
        await beforeCommit?.()
        return true
      })
    },

    async appExists (appId) {
      return await db.selectFrom('apps').select('id').where('id', '=', appId).executeTakeFirst() !== undefined
    },

    async listApps () {
      const rows = await db.selectFrom('apps').selectAll().orderBy('created_at').orderBy('id').execute()
      return rows.map((r) => ({ appId: r.id, name: r.name, createdAt: Number(r.created_at) }))
    },

    async insertKey (newKey) {
      await insertKey(db, newKey)
    },

    async listKeys (appId) {
      const rows = await db.selectFrom('api_keys').select(['id', 'app_id', 'prefix', 'created_at', 'revoked_at'])
        .where('app_id', '=', appId).orderBy('created_at').orderBy('id').execute()
      return rows.map((r) => ({ keyId: r.id, appId: r.app_id, prefix: r.prefix, createdAt: Number(r.created_at), revokedAt: toMillis(r.revoked_at) }))
    },

    async revokeKey (keyId, at) {
      const result = await db.updateTable('api_keys').set({ revoked_at: at })
        .where('id', '=', keyId).where('revoked_at', 'is', null).executeTakeFirst()
      if (result.numUpdatedRows > 0n) return true
      return await db.selectFrom('api_keys').select('id').where('id', '=', keyId).executeTakeFirst() !== undefined
    },

    async deleteApp (appId, at) {
      // Seldom run (an operator's act), so built here rather than compiled once.
      const found = await db.selectFrom('apps').selectAll().where('id', '=', appId).executeTakeFirst()
      if (found === undefined) return undefined
      await db.updateTable('api_keys').set({ revoked_at: at }).where('app_id', '=', appId).where('revoked_at', 'is', null).execute()
      const deleteUsers = (trx: Kysely<DatabaseSchema>, limit?: number) => trx.deleteFrom('users').where('klaim_id', 'in', (eb) => {
        const ids = eb.selectFrom('users').select('klaim_id').where('app_id', '=', appId)
        return limit === undefined ? ids : ids.limit(limit)
      })
      const deleteAnswers = (trx: Kysely<DatabaseSchema>, limit?: number) => trx.deleteFrom('idempotency_keys').where((eb) => {
        const rows = eb.selectFrom('idempotency_keys').select(['scope', 'key'])
          .where('scope', 'in', eb.selectFrom('api_keys').select('id').where('app_id', '=', appId))
        return eb(eb.refTuple('scope', 'key'), 'in', (limit === undefined ? rows : rows.limit(limit)).$asTuple('scope', 'key'))
      })
      let users = await deleteInBatches(async () => await deleteUsers(db, DELETE_BATCH).executeTakeFirst())
      let storedResponses = await deleteInBatches(async () => await deleteAnswers(db, DELETE_BATCH).executeTakeFirst())
      return await db.transaction().execute(async (trx) => {
        // PostgreSQL: a request already past its key check may be inserting a user of the app,
        // whose foreign key holds a share lock on the app's row until it commits. Waiting for
        // that lock here lets it commit first, so the deletes below see its user and answer, and
        // then holds off any later one (it fails: no app). SQLite's transactions are one at a time.
        if (dialect === 'postgres') await trx.selectFrom('apps').select('id').where('id', '=', appId).forUpdate().execute()
        users += Number((await deleteUsers(trx).executeTakeFirst()).numDeletedRows)
        storedResponses += Number((await deleteAnswers(trx).executeTakeFirst()).numDeletedRows)
        const keys = Number((await trx.deleteFrom('api_keys').where('app_id', '=', appId).executeTakeFirst()).numDeletedRows)
        const apps = Number((await trx.deleteFrom('apps').where('id', '=', appId).executeTakeFirst()).numDeletedRows)
        // None: another deletion of the same app finished first, and says so.
        return apps === 0 ? undefined : { app: { appId, name: found.name, createdAt: Number(found.created_at) }, users, keys, storedResponses }
      })
    },

    async findKeyByHash (keyHash) {
      const row = (await keyByHash(db, [keyHash])).rows[0]
      return row === undefined ? undefined : toKey(row)
    },

    async findKeyAndUser (keyHash, userId) {
      // Placeholders in SQL order: the join's user_id, then the key hash.
      const row = (await keyAndUser(db, [userId, keyHash])).rows[0]
      if (row === undefined) return undefined
      return { key: toKey(row), user: row.klaim_id === null ? undefined : rowToUser(row as UserRow) }
    }
  }
}

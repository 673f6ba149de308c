import type { Insertable, Kysely, Selectable } from 'kysely'
import { KlaimIdCollisionError, UnknownAppError, type UserRepository } from '../../application/ports.js'
import { EmailTakenError, UserIdTakenError } from '../../domain/errors.js'
import { metadataJson } from '../../domain/metadata.js'
import { emailKey, type AcquisitionSource, type JsonObject, type User } from '../../domain/user.js'
import { foreignKeyViolation, uniqueViolation } from './database-errors.js'
import { prepare, type Prepared } from './prepared.js'
import type { DialectName } from './database-url.js'
import type { DatabaseSchema, UsersTable } from './schema.js'

/** The columns a user is read from (`rowToUser`); `email_key` is derived from `email` (`userToRow`). */
export const USER_COLUMNS = ['app_id', 'klaim_id', 'user_id', 'email', 'name', 'metadata', 'credit_balance', 'acquisition_source', 'created_at', 'updated_at', 'version'] as const
export type UserRow = Pick<Selectable<UsersTable>, typeof USER_COLUMNS[number]>

export function rowToUser (row: UserRow): User {
  return {
    appId: row.app_id,
    klaimId: row.klaim_id,
    userId: row.user_id,
    email: row.email,
    name: row.name,
    metadata: (typeof row.metadata === 'string' ? JSON.parse(row.metadata) : row.metadata) as JsonObject,
    creditBalance: Number(row.credit_balance),
    acquisitionSource: row.acquisition_source as AcquisitionSource,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    version: row.version
  }
}

/** Both dialects take metadata as JSON text: node-postgres would send an array as a Postgres array. */
export function userToRow (user: User): Insertable<UsersTable> & { version: number } {
  return {
    app_id: user.appId,
    klaim_id: user.klaimId,
    user_id: user.userId,
    email: user.email,
    email_key: emailKey(user.email),
    name: user.name,
    metadata: metadataJson(user.metadata),
    credit_balance: user.creditBalance,
    acquisition_source: user.acquisitionSource,
    created_at: user.createdAt,
    updated_at: user.updatedAt,
    version: user.version
  }
}

function conflictError (error: unknown): Error {
  if (foreignKeyViolation(error)) return new UnknownAppError()
  switch (uniqueViolation(error)) {
    case 'user_id': return new UserIdTakenError()
    case 'email': return new EmailTakenError()
    case 'klaim_id': return new KlaimIdCollisionError()
    default: return error as Error
  }
}

/**
 * The row is no longer the version the write started from: another write came first, since a read
 * that took no lock (outside a transaction, or the request's first read). Retried as a
 * serialisation failure; the next attempt reads afresh.
 */
class LostUpdateError extends Error {
  readonly code = '40001'
}

// The columns an update may change (set in this order); `updated_at` and `version` always change.
type Mutable = 'user_id' | 'email' | 'email_key' | 'name' | 'metadata'

/** Compiled once per database; `kyselyUserRepository` binds them to the pool or a transaction. */
export function compileUserQueries (db: Kysely<DatabaseSchema>, dialect: DialectName) {
  // Named columns, not `*`: a server-side prepared statement must not change its result type.
  const byUserId = db.selectFrom('users').select(USER_COLUMNS).where('app_id', '=', '').where('user_id', '=', '')
  const updates = new Map<string, Prepared<never>>()
  // A row of placeholders in userToRow's column order, which `insert`'s parameters follow.
  const placeholders = userToRow({ appId: '', klaimId: '', userId: '', email: '', name: '', metadata: {}, creditBalance: 0, acquisitionSource: 'api', createdAt: 0, updatedAt: 0, version: 0 })
  return {
    // ON CONFLICT keeps a klaim_id collision from aborting a PostgreSQL transaction.
    insert: prepare(db.insertInto('users').values(placeholders).onConflict((oc) => oc.column('klaim_id').doNothing()).returning('klaim_id')),
    findByUserId: prepare(byUserId),
    // Only PostgreSQL locks rows; SQLite's transactions take the write lock at BEGIN IMMEDIATE.
    findByUserIdForUpdate: prepare(dialect === 'postgres' ? byUserId.forUpdate() : byUserId),
    userIdExists: prepare(db.selectFrom('users').select('klaim_id').where('app_id', '=', '').where('user_id', '=', '')),
    /** An UPDATE of exactly `columns`: unchanged columns are not written, so their indexes are not touched. */
    update (columns: Mutable[]): Prepared<never> {
      const key = columns.join(',')
      let prepared = updates.get(key)
      if (prepared === undefined) {
        const set: Record<string, string | number> = Object.fromEntries(columns.map((c) => [c, '']))
        // Found by (app_id, user_id), whose index the read before it has just walked (with a
        // million users the klaim_id index's pages are seldom cached); klaim_id and version guard it.
        prepared = prepare(db.updateTable('users').set({ ...set, updated_at: 0, version: 0 })
          .where('app_id', '=', '').where('user_id', '=', '').where('klaim_id', '=', '').where('version', '=', 0)) as Prepared<never>
        updates.set(key, prepared)
      }
      return prepared
    }
  }
}

export type UserQueries = ReturnType<typeof compileUserQueries>

/**
 * The `UserRepository` port on `db` (the pool, or a transaction). With `lockReads`, inside a
 * PostgreSQL transaction, `findByUserId` takes the row lock (`FOR UPDATE`), so a read-merge-write
 * cannot interleave with another.
 */
export function kyselyUserRepository (db: Kysely<DatabaseSchema>, queries: UserQueries, lockReads: boolean): UserRepository {
  const find = lockReads ? queries.findByUserIdForUpdate : queries.findByUserId
  return {
    async findByUserId (appId, userId) {
      const row = (await find(db, [appId, userId])).rows[0] as UserRow | undefined
      return row === undefined ? undefined : rowToUser(row)
    },

    async userIdExists (appId, userId) {
      return (await queries.userIdExists(db, [appId, userId])).rows.length > 0
    },

    async insert (user) {
      let inserted
      try {
        inserted = await queries.insert(db, Object.values(userToRow(user)))
      } catch (error) {
        throw conflictError(error)
      }
      if (inserted.rows.length === 0) throw new KlaimIdCollisionError()
    },

    async update (next, previous) {
      // Only the changed columns, in Mutable's order; only their values are worked out.
      const columns: Mutable[] = []
      const parameters: unknown[] = []
      const set = (column: Mutable, value: unknown): void => { columns.push(column); parameters.push(value) }
      if (next.userId !== previous.userId) set('user_id', next.userId)
      if (next.email !== previous.email) set('email', next.email)
      const nextEmailKey = emailKey(next.email)
      if (nextEmailKey !== emailKey(previous.email)) set('email_key', nextEmailKey)
      if (next.name !== previous.name) set('name', next.name)
      // The domain keeps the stored object unless a metadata patch was applied.
      if (next.metadata !== previous.metadata) set('metadata', metadataJson(next.metadata))
      parameters.push(next.updatedAt, next.version, previous.appId, previous.userId, previous.klaimId, previous.version)
      let result
      try {
        result = await queries.update(columns)(db, parameters)
      } catch (error) {
        throw conflictError(error)
      }
      if (result.numAffectedRows === 0n) throw new LostUpdateError(`user ${next.klaimId} changed since it was read`)
    },

    async deleteByUserId (appId, userId) {
      // Seldom run (an operator's erasure), so built here rather than compiled once.
      const row = await db.deleteFrom('users').where('app_id', '=', appId).where('user_id', '=', userId)
        .returning(USER_COLUMNS).executeTakeFirst()
      return row === undefined ? undefined : rowToUser(row)
    },

    async listPage (appId, afterUserId, limit) {
      // Seldom run (an operator's export), so built here rather than compiled once.
      const app = db.selectFrom('users').select(USER_COLUMNS).where('app_id', '=', appId)
      const rows = await (afterUserId === undefined ? app : app.where('user_id', '>', afterUserId)).orderBy('user_id').limit(limit).execute()
      return rows.map(rowToUser)
    }
  }
}

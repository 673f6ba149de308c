import type { Insertable, Kysely, Selectable } from 'kysely'
import { KlaimIdCollisionError, type UserRepository } from '../../application/ports.js'
import { EmailTakenError, UserIdTakenError } from '../../domain/errors.js'
import { emailKey, type AcquisitionSource, type JsonObject, type User } from '../../domain/user.js'
import { uniqueViolation } from './database-errors.js'
import type { DatabaseSchema, DialectName, UsersTable } from './schema.js'

type UserRow = Selectable<UsersTable>

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
    metadata: JSON.stringify(user.metadata),
    credit_balance: user.creditBalance,
    acquisition_source: user.acquisitionSource,
    created_at: user.createdAt,
    updated_at: user.updatedAt,
    version: user.version
  }
}

function conflictError (error: unknown): Error {
  switch (uniqueViolation(error)) {
    case 'user_id': return new UserIdTakenError()
    case 'email': return new EmailTakenError()
    case 'klaim_id': return new KlaimIdCollisionError()
    default: return error as Error
  }
}

/**
 * `lockReads`: inside a PostgreSQL transaction, `findByUserId` takes the row lock (`FOR UPDATE`)
 * so a read-merge-write cannot interleave. SQLite needs none: its transactions take the write
 * lock at `BEGIN IMMEDIATE`.
 */
export function kyselyUserRepository (db: Kysely<DatabaseSchema>, dialect: DialectName, lockReads: boolean): UserRepository {
  const forUpdate = lockReads && dialect === 'postgres'
  return {
    async findByUserId (appId, userId) {
      let query = db.selectFrom('users').selectAll().where('app_id', '=', appId).where('user_id', '=', userId)
      if (forUpdate) query = query.forUpdate()
      const row = await query.executeTakeFirst()
      return row === undefined ? undefined : rowToUser(row)
    },

    async userIdExists (appId, userId) {
      const row = await db.selectFrom('users').select('klaim_id')
        .where('app_id', '=', appId).where('user_id', '=', userId).executeTakeFirst()
      return row !== undefined
    },

    async insert (user) {
      let inserted
      try {
        // ON CONFLICT keeps a klaim_id collision from aborting a PostgreSQL transaction.
        inserted = await db.insertInto('users').values(userToRow(user))
          .onConflict((oc) => oc.column('klaim_id').doNothing())
          .returning('klaim_id').executeTakeFirst()
      } catch (error) {
        throw conflictError(error)
      }
      if (inserted === undefined) throw new KlaimIdCollisionError()
    },

    async update (user) {
      const { klaim_id: klaimId, app_id: _app, created_at: _created, ...changes } = userToRow(user)
      try {
        await db.updateTable('users').set(changes).where('klaim_id', '=', klaimId).execute()
      } catch (error) {
        throw conflictError(error)
      }
    }
  }
}

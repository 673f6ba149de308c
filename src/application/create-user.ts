import { UserIdTakenError, ValidationError } from '../domain/errors.js'
import { applyMetadata } from '../domain/metadata.js'
import { parseNewUser } from '../domain/profile-rules.js'
import { klaimId, toProfile, type AcquisitionSource, type User, type UserProfile } from '../domain/user.js'
import { unknownApp } from './apps.js'
import { KlaimIdCollisionError, UnknownAppError, type Clock, type IdSource, type Transactor, type UnitOfWork } from './ports.js'

export interface CreateUserCommand {
  appId: string
  email: unknown
  userId?: unknown
  name?: unknown
  metadata?: unknown
}

const MAX_ID_DRAWS = 5

/**
 * Creates a user of `appId`. `userId` defaults to the generated klaim_id; `metadata` is merged
 * onto `{}` (so nulls are dropped). Throws `ValidationError` (bad fields, unknown app, metadata
 * over a limit), `UserIdTakenError`, `EmailTakenError`.
 */
export function createUser (deps: { transactor: Transactor, clock: Clock, ids: IdSource }) {
  const { transactor, clock, ids } = deps
  return async function (command: CreateUserCommand, uow?: UnitOfWork): Promise<UserProfile> {
    const { appId, ...input } = command
    const fields = parseNewUser(input)
    if (typeof appId !== 'string') throw unknownApp()
    const errors: { path: string, message: string }[] = []
    const metadata = applyMetadata({}, fields.metadata ?? null, errors)
    if (errors.length > 0) throw new ValidationError(errors)

    const work = async ({ users }: UnitOfWork): Promise<UserProfile> => {
      if (fields.userId !== undefined && await users.userIdExists(appId, fields.userId)) throw new UserIdTakenError()
      for (let draw = 1; ; draw++) {
        const now = clock.now()
        const id = klaimId(now, (n) => ids.pick(n))
        const lastDraw = draw === MAX_ID_DRAWS
        // A drawn id that is taken, as klaim_id or as a user_id nobody asked for, is drawn again.
        if (fields.userId === undefined && !lastDraw && await users.userIdExists(appId, id)) continue
        const user: User = {
          appId,
          klaimId: id,
          userId: fields.userId ?? id,
          email: fields.email,
          name: fields.name ?? null,
          metadata,
          creditBalance: 0,
          acquisitionSource: 'api' satisfies AcquisitionSource,
          createdAt: now,
          updatedAt: now,
          version: 1
        }
        try {
          await users.insert(user)
          return toProfile(user)
        } catch (error) {
          if (error instanceof UnknownAppError) throw unknownApp()
          if (!(error instanceof KlaimIdCollisionError) || lastDraw) throw error
        }
      }
    }
    return uow === undefined ? await transactor.transaction(work) : await work(uow)
  }
}

import { ValidationError } from '../domain/errors.js'
import { hasForbiddenCharacter } from '../domain/metadata.js'
import { isValidUserId } from '../domain/profile-rules.js'
import type { ApiKey, App, AppRepository, Clock, DeletedApp, IdSource, KeyMinter, NewKey, StoredKey, UserSnapshot } from './ports.js'

export interface CreatedApp {
  appId: string
  name: string
  /** Shown once: only its hash is stored. */
  apiKey: string
}

export interface CreatedKey {
  keyId: string
  appId: string
  apiKey: string
}

interface AppDeps { apps: AppRepository, clock: Clock, ids: IdSource, keys: KeyMinter }

/** A new key of `appId`, not stored yet: `apiKey` is shown once, `keyHash` stored. */
function mintKey ({ clock, ids, keys }: AppDeps, appId: string): NewKey & { apiKey: string } {
  const { apiKey, keyHash, prefix } = keys.mint()
  const key: ApiKey = { keyId: ids.opaque('key_'), appId, prefix, createdAt: clock.now(), revokedAt: null }
  return { key, keyHash, apiKey }
}

/** A new app named `name` with its first key, not stored yet, and what its creator is shown. */
function newApp (deps: AppDeps, name: string): { app: App, firstKey: NewKey, created: CreatedApp } {
  const app: App = { appId: deps.ids.opaque('app_'), name, createdAt: deps.clock.now() }
  const { apiKey, ...firstKey } = mintKey(deps, app.appId)
  return { app, firstKey, created: { appId: app.appId, name, apiKey } }
}

/** Creates an app with a first API key, both or neither. Throws `ValidationError` for a blank or overlong name. */
export function createApp (deps: AppDeps) {
  return async function ({ name }: { name: unknown }): Promise<CreatedApp> {
    const trimmed = typeof name === 'string' ? name.trim() : ''
    if (trimmed.length === 0 || trimmed.length > 200 || hasForbiddenCharacter(trimmed)) {
      throw new ValidationError([{ path: '/name', message: 'must be a string of 1 to 200 characters' }])
    }
    const { app, firstKey, created } = newApp(deps, trimmed)
    await deps.apps.insertApp(app, firstKey)
    return created
  }
}

/**
 * The first start's app: creates the app `default` with a key, if the database has never held an
 * app; undefined when it has (its apps may have been deleted since). Several processes starting
 * at once on an empty database create one app between them.
 *
 * `keep` puts the key where its operator will find it. It is called only in the call that creates
 * the app, in the transaction that stores it, before the commit: if it throws, nothing is
 * created, so a key that could not be kept never opens an app.
 */
export function createFirstApp (deps: AppDeps) {
  return async function (keep?: (created: CreatedApp) => void | Promise<void>): Promise<CreatedApp | undefined> {
    const { app, firstKey, created } = newApp(deps, 'default')
    const beforeCommit = keep === undefined ? undefined : async () => { await keep(created) }
    return await deps.apps.insertFirstApp(app, firstKey, beforeCommit) ? created : undefined
  }
}

/** The `ValidationError` for an `appId` that names no app, where one is created or changed. */
export const unknownApp = (): ValidationError => new ValidationError([{ path: '/appId', message: 'is not a known app' }])

/** Whether `error` is `unknownApp()`'s: an adapter answers it in its own words (the CLI), or as a gone key (HTTP). */
export const isUnknownApp = (error: unknown): boolean => error instanceof ValidationError && error.errors.some((e) => e.path === '/appId')

/** Adds an API key to an existing app. Throws `ValidationError` for an unknown app. */
export function createApiKey (deps: AppDeps) {
  return async function ({ appId }: { appId: string }): Promise<CreatedKey> {
    if (typeof appId !== 'string' || !await deps.apps.appExists(appId)) throw unknownApp()
    const { apiKey, ...newKey } = mintKey(deps, appId)
    await deps.apps.insertKey(newKey)
    return { keyId: newKey.key.keyId, appId, apiKey }
  }
}

/**
 * An app's keys, revoked ones included (never the keys themselves). Throws `ValidationError` for
 * an unknown app, so a mistyped app id is not taken for an app without keys.
 */
export function listApiKeys ({ apps }: Pick<AppDeps, 'apps'>) {
  return async function ({ appId }: { appId: string }): Promise<ApiKey[]> {
    if (typeof appId !== 'string' || !await apps.appExists(appId)) throw unknownApp()
    return await apps.listKeys(appId)
  }
}

/**
 * Deletes an app with its users, keys and stored `Idempotency-Key` answers (an operator's act,
 * when a client leaves: see `AppRepository.deleteApp`). Throws `ValidationError` for an unknown app.
 */
export function deleteApp ({ apps, clock }: Pick<AppDeps, 'apps' | 'clock'>) {
  return async function ({ appId }: { appId: string }): Promise<DeletedApp> {
    const deleted = typeof appId === 'string' ? await apps.deleteApp(appId, clock.now()) : undefined
    if (deleted === undefined) throw unknownApp()
    return deleted
  }
}

export interface Authenticated {
  appId: string
  keyId: string
  /** The user asked for with `readUser`, read together with the key. */
  snapshot?: UserSnapshot
}

/**
 * The app and key id of an API key, or undefined for an unknown or revoked key. Looks the key up
 * by its hash on every call, so a revocation holds from the next request, in every process.
 * With `readUser` (a valid `user_id`), the same read also fetches that user of the key's app, as
 * a snapshot for `getUser` or `updateUserProfile`, which then need no read of their own.
 */
export function authenticate ({ apps, keys }: Pick<AppDeps, 'apps' | 'keys'>) {
  return async function (apiKey: string, readUser?: string): Promise<Authenticated | undefined> {
    const keyHash = keys.hash(apiKey)
    if (readUser === undefined || !isValidUserId(readUser)) {
      const found = await apps.findKeyByHash(keyHash)
      return isValid(found, keyHash) ? { appId: found.appId, keyId: found.keyId } : undefined
    }
    const found = await apps.findKeyAndUser(keyHash, readUser)
    if (!isValid(found?.key, keyHash)) return undefined
    const { appId, keyId } = found.key
    return { appId, keyId, snapshot: { appId, userId: readUser, user: found.user } }
  }

  // Unknown and revoked keys take the same path: one indexed read, one comparison.
  function isValid (found: StoredKey | undefined, keyHash: string): found is StoredKey {
    return found !== undefined && keys.same(found.keyHash, keyHash) && found.revokedAt === null
  }
}

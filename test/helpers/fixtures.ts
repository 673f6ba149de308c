import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import type { Test } from 'tap'
import { buildHttpApp } from '../../src/adapters/http/app.js'
import { openPersistence, type Persistence } from '../../src/adapters/persistence/open-persistence.js'
import { openUsersService, type UsersService, type UsersServiceOptions } from '../../src/users-service.js'
import type { TestDatabase } from './databases.js'
import { sampleUser } from './users.js'

export async function freshPersistence (t: Test, db: TestDatabase): Promise<Persistence> {
  const persistence = await openPersistence({ databaseUrl: await db.fresh(t) })
  t.teardown(async () => await persistence.close())
  return persistence
}

/** A service on a fresh database of `db`, or on `options.databaseUrl` when given. */
export async function freshService (t: Test, db: TestDatabase, options: Partial<UsersServiceOptions> = {}): Promise<UsersService> {
  const service = await openUsersService({ ...options, databaseUrl: options.databaseUrl ?? await db.fresh(t) })
  t.teardown(async () => await service.close())
  return service
}

export interface TestClient {
  app: FastifyInstance
  service: UsersService
  appId: string
  apiKey: string
  /** Injects a request with the app's key (unless `headers.authorization` says otherwise). */
  request(options: InjectOptions): Promise<LightMyRequestResponse>
  put(userId: string, body: unknown, headers?: Record<string, string>): Promise<LightMyRequestResponse>
  createUser(body: Record<string, unknown>): Promise<LightMyRequestResponse>
}

export function clientFor (app: FastifyInstance, service: UsersService, appId: string, apiKey: string): TestClient {
  const request = async (options: InjectOptions) =>
    await app.inject({ ...options, headers: { authorization: `Bearer ${apiKey}`, ...options.headers } })
  return {
    app,
    service,
    appId,
    apiKey,
    request,
    put: async (userId, body, headers = {}) => await request({ method: 'PUT', url: `/users/${encodeURIComponent(userId)}`, payload: body as object, headers }),
    createUser: async (body) => await request({ method: 'POST', url: '/users', payload: body })
  }
}

/** A built (not listening) HTTP app on a fresh database, with one app and its key. */
export async function freshClient (t: Test, db: TestDatabase, options: Partial<UsersServiceOptions> = {}): Promise<TestClient> {
  const service = await freshService(t, db, options)
  const app = await buildHttpApp({ service })
  t.teardown(async () => await app.close())
  const { appId, apiKey } = await service.createApp({ name: 'test' })
  return clientFor(app, service, appId, apiKey)
}

/**
 * Runs each hot prepared statement once on `persistence` (see HOT_STATEMENTS): app 'app_1'
 * and its user 'ada', left at version 2 and named 'Ada'; idempotency key 'k1' of 'scope' done;
 * rate-limit bucket 'b' counted once in the window at 60000.
 */
export async function runHotStatements (t: Test, persistence: Persistence): Promise<void> {
  await persistence.apps.insertApp({ appId: 'app_1', name: 'app', createdAt: 1 })
  const ada = sampleUser({ appId: 'app_1', klaimId: 'k1', userId: 'ada' })
  await persistence.users.insert(ada)
  await persistence.users.update({ ...ada, name: 'Ada', updatedAt: 2, version: 2 }, ada)
  t.match(await persistence.users.findByUserId('app_1', 'ada'), { name: 'Ada', version: 2 })
  await persistence.apps.findKeyByHash('nope')
  const record = { fingerprint: 'f', response: undefined, lockedUntil: 5, expiresAt: 9 }
  for (const key of ['k1', 'k2']) t.equal(await persistence.idempotency.claim('scope', key, record), undefined)
  t.ok(await persistence.idempotency.complete('scope', 'k1', 5, { status: 200, body: '{}', headers: {} }))
  await persistence.idempotency.release('scope', 'k2', 5)
  t.match(await persistence.idempotency.find('scope', 'k1'), { response: { status: 200 } })
  t.same(await persistence.rateCounter.hit('b', 60_000), { windowStart: 60_000, hits: 1 })
}

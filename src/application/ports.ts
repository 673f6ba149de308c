import type { User } from '../domain/user.js'

/** Milliseconds since the Unix epoch. */
export interface Clock {
  now(): number
}

/** Randomness for identifiers, kept behind a port so the domain and use cases stay pure. */
export interface IdSource {
  /** A uniform integer in [0, n). */
  pick(n: number): number
  /** An opaque, unguessable identifier such as `app_3kQ9...`. */
  opaque(prefix: string): string
}

/** Stored users of every app. Reads inside a transaction lock what they read until it ends. */
export interface UserRepository {
  /** The user of `appId` whose current `user_id` is `userId`. */
  findByUserId(appId: string, userId: string): Promise<User | undefined>
  /** Whether another user of `appId` holds `userId`; takes no lock. */
  userIdExists(appId: string, userId: string): Promise<boolean>
  /**
   * Stores a new user. Throws `UnknownAppError` for a missing app, `UserIdTakenError` or
   * `EmailTakenError` when a unique index of the app refuses it, `KlaimIdCollisionError` when the generated klaim_id exists already
   * (that one must leave the transaction usable, so the use case can draw another id).
   */
  insert(user: User): Promise<void>
  /**
   * Stores `next` over `previous` (the version read in this transaction; found by klaim_id).
   * Throws like `insert` on a unique index.
   */
  update(next: User, previous: User): Promise<void>
  /**
   * Deletes the user of `appId` whose current `user_id` is `userId`, in one statement, and
   * returns it as it was; undefined when there is none. Its `user_id` and email are free at once.
   */
  deleteByUserId(appId: string, userId: string): Promise<User | undefined>
  /**
   * Up to `limit` users of `appId` in `user_id` order, those after `afterUserId` when given: one
   * page of a listing, read on the (app_id, user_id) index. Each page is a read of its own, unless
   * made through a `ReadSnapshot`.
   */
  listPage(appId: string, afterUserId: string | undefined, limit: number): Promise<User[]>
}

/**
 * Reads that all see the database as it was at one moment, that of the first: what is written
 * meanwhile, they do not see. Holds a connection (and, on PostgreSQL, the oldest rows' versions)
 * until `close`, which must follow. The service's adapters end one left 10 minutes without a
 * read, so that one forgotten cannot hold them for ever: a read then fails (`SnapshotEnded`).
 */
export interface ReadSnapshot {
  users: Pick<UserRepository, 'listPage'>
  close(): Promise<void>
}

/** A response kept for an idempotency key: replayed as is. */
export interface StoredResponse {
  status: number
  /** The body exactly as sent (JSON text). */
  body: string
  headers: Record<string, string>
}

export interface IdempotencyRecord {
  fingerprint: string
  /** Undefined while the first request still runs. */
  response: StoredResponse | undefined
  lockedUntil: number
  expiresAt: number
}

/**
 * Idempotency keys and their responses, shared by every process through the database. A claim
 * is known by its `lockedUntil`: once another request has taken the key over, the first one can
 * neither answer nor release it.
 */
export interface IdempotencyStore {
  /** Stores `record` unless the key exists; returns the existing record, or undefined when claimed. */
  claim(scope: string, key: string, record: IdempotencyRecord): Promise<IdempotencyRecord | undefined>
  /** The record stored under the key, if any. */
  find(scope: string, key: string): Promise<IdempotencyRecord | undefined>
  /** Replaces `previous` with `record` only if it is still what is stored; false when someone else did. */
  takeOver(scope: string, key: string, previous: IdempotencyRecord, record: IdempotencyRecord): Promise<boolean>
  /** Stores the response of the claim made with `lockedUntil`; false, storing nothing, when that claim is no longer held. */
  complete(scope: string, key: string, lockedUntil: number, response: StoredResponse): Promise<boolean>
  /** Forgets the claim made with `lockedUntil`, unless it was answered or taken over. */
  release(scope: string, key: string, lockedUntil: number): Promise<void>
  /** Deletes expired keys; returns how many. */
  purgeExpired(now: number): Promise<number>
  /**
   * Deletes the answers stored under `scopes` whose body holds `text` (case and all), and
   * returns how many: an erased user's, found by its `klaim_id`. The bodies are searched inside
   * the database, a batch of keys at a time with a pause after each.
   */
  deleteAnswersHolding(scopes: string[], text: string): Promise<number>
}

/**
 * Requests counted per bucket in fixed windows, shared by every process on the database (the
 * HTTP adapter's rate limits, with RATE_LIMIT_STORE=database).
 */
export interface RateCounter {
  /**
   * Counts one request for `bucket` in the window that starts at `windowStart`, and returns the
   * window the bucket counts in now with its count. A bucket moves to a later window as soon as
   * any process counts in one; a request from an earlier window (a process whose clock is behind)
   * is not counted, and gets the later window's count.
   */
  hit(bucket: string, windowStart: number): Promise<{ windowStart: number, hits: number }>
  /** Deletes the buckets whose window started before `before`; returns how many. */
  purge(before: number): Promise<number>
}

/** What one transaction can touch. */
export interface UnitOfWork {
  users: UserRepository
  idempotency: IdempotencyStore
}

export interface Transactor {
  /**
   * Runs `work` in one transaction: its writes commit together or not at all. Retries it whole
   * when the database aborts it for a deadlock or a serialisation failure.
   */
  transaction<T>(work: (uow: UnitOfWork) => Promise<T>): Promise<T>
  /**
   * Runs `work` without a transaction: reads take no lock, so `work` must make at most one
   * write, guarded by the version it read (`UserRepository.update` is). When another writer
   * got there first the write is refused and `work` runs again on fresh data, until it wins:
   * a compare-and-swap, with fewer round trips than a transaction.
   */
  optimistic<T>(work: (uow: UnitOfWork) => Promise<T>): Promise<T>
  /**
   * Like `transaction`, for `work` whose every write is guarded: refused by the database, with
   * no effect, once what `work` read has changed (`UserRepository.update` is, by the version it
   * read; an insert, by the unique indexes; `IdempotencyStore.complete`, by its claim). Its
   * reads may then take no lock, and its writes may be held back and made together at the end,
   * one transaction with no round trip between them. A held write answers at once, as having
   * changed one row, so `work` must not use what a write returns, nor read back what it wrote.
   * If any is refused or fails at the end, none is made, and `work` runs again in a
   * `transaction`; so does any other failure of `work` itself, whose error is then the answer.
   * Two errors are answered from the first run, and `work` not run again: a `UsersError` that
   * `work` throws (a 404, a 409 from what it read; its writes, held, were never made, and what
   * it read was true when read, as under `optimistic`); and, when the database cannot tell
   * whether the writes were made (its connection lost once the commit was sent), that error.
   * Optional: a transactor without it serves such work with `transaction`.
   */
  guardedTransaction?<T>(work: (uow: UnitOfWork) => Promise<T>): Promise<T>
  /**
   * Opens a read-only snapshot for reads that must agree with each other however long they take
   * (an export). Writes go on meanwhile, unless the database has one connection only (in-memory
   * SQLite), which the snapshot then holds: they wait for its end.
   */
  readSnapshot(): Promise<ReadSnapshot>
}

export interface App {
  appId: string
  name: string
  createdAt: number
}

export interface ApiKey {
  keyId: string
  appId: string
  /** The first characters of the key, enough for an operator to recognise it. */
  prefix: string
  createdAt: number
  revokedAt: number | null
}

/** A key to store: only its hash is kept. */
export interface NewKey {
  key: ApiKey
  keyHash: string
}

/** Apps and their API keys. Keys are stored only as hashes. */
export interface AppRepository {
  /**
   * Stores `app`, and with `firstKey` that key too, in the same transaction, which also records
   * for good that the database has held an app.
   */
  insertApp(app: App, firstKey?: NewKey): Promise<void>
  /**
   * Stores `app` and its key only if the database has never held an app, checked and written in
   * one transaction that excludes every other process doing the same; false, storing nothing,
   * when it has (even if its apps were all deleted since). `beforeCommit` runs in that
   * transaction once they are written, only then: if it throws, nothing is stored.
   */
  insertFirstApp(app: App, firstKey: NewKey, beforeCommit?: () => Promise<void>): Promise<boolean>
  appExists(appId: string): Promise<boolean>
  listApps(): Promise<App[]>
  insertKey(newKey: NewKey): Promise<void>
  listKeys(appId: string): Promise<ApiKey[]>
  /** Marks the key revoked; false when there is no such key. */
  revokeKey(keyId: string, at: number): Promise<boolean>
  /**
   * Deletes the app and all it holds: its users, its keys, and the answers stored under its keys
   * for `Idempotency-Key`s. Its keys are revoked first (at `at`), so that no request of the app
   * starts while the rest goes: the users and stored answers in batches (an app's million users
   * deleted in one statement would hold SQLite's write lock for seconds), then whatever requests
   * already under way wrote, the keys and the app in one transaction. Run again after an
   * interruption, it finishes the work. Undefined when there is no such app, or when another
   * deletion of it finished first.
   */
  deleteApp(appId: string, at: number): Promise<DeletedApp | undefined>
  /** The key stored under `keyHash`, revoked or not. */
  findKeyByHash(keyHash: string): Promise<StoredKey | undefined>
  /**
   * `findKeyByHash` and, in the same read, the user of the key's app whose `user_id` is `userId`
   * (undefined when there is none, or when the key is revoked): one round trip instead of two.
   */
  findKeyAndUser(keyHash: string, userId: string): Promise<{ key: StoredKey, user: User | undefined } | undefined>
}

/** An app as it was before `deleteApp`, and how many rows went with it. */
export interface DeletedApp {
  app: App
  users: number
  keys: number
  storedResponses: number
}

export interface StoredKey {
  keyId: string
  appId: string
  keyHash: string
  revokedAt: number | null
}

/**
 * A read of one user made earlier in the same request (with its API key): a use case given one
 * for the same app and `user_id` starts from it instead of reading again. `user` is undefined
 * when there was no such user.
 */
export interface UserSnapshot {
  appId: string
  userId: string
  user: User | undefined
}

/** Makes and hashes API keys (adapters bring the cryptography). */
export interface KeyMinter {
  mint(): { apiKey: string, keyHash: string, prefix: string }
  hash(apiKey: string): string
  /** Constant-time equality of two hashes. */
  same(a: string, b: string): boolean
}

/** The user's app does not exist (the database's foreign key says so). */
export class UnknownAppError extends Error {
  constructor () {
    super('unknown app')
    this.name = 'UnknownAppError'
  }
}

/** The generated klaim_id exists already; the use case draws another. */
export class KlaimIdCollisionError extends Error {
  constructor () {
    super('klaim_id collision')
    this.name = 'KlaimIdCollisionError'
  }
}

import type { QueryResult } from 'kysely'
import pg from 'pg'
import { endsPostgresSession } from './database-errors.js'
import type { PipelineGauges } from './persistence-options.js'
import { HeldWritesInDoubt } from './prepared.js'

/**
 * How long a statement on the pipeline waits for a row lock (a transaction's `FOR UPDATE`, an
 * uncommitted insert of the same key) before it is given up and sent through the pool instead.
 * Every statement behind it on the connection waits as long, so this stays short; the pool's
 * connection then waits the full lock timeout.
 */
const PIPELINE_LOCK_TIMEOUT_MS = 25
/** After a failed attempt to connect, the least time before the next one (by default). */
const RECONNECT_AFTER_MS = 1000

/** division_by_zero: how a held write that changed no row fails (see `failingOnNoRow`). */
const NO_ROW = '22012'

/** `failingOnNoRow`'s statements, by write: prepared statements, a bounded set (see HOT_STATEMENTS). */
const FAILING_ON_NO_ROW = new Map<string, string>()

/**
 * A write (an INSERT, UPDATE or DELETE) as a statement that fails, division_by_zero, when it
 * changes no row: in a transaction, that rolls back the writes before it and skips the rest.
 */
export function failingOnNoRow (text: string): string {
  let failing = FAILING_ON_NO_ROW.get(text)
  if (failing === undefined) {
    failing = `with held as (${text}${/\breturning\b/i.test(text) ? '' : ' returning 1'}) select 1 / count(*) from held`
    FAILING_ON_NO_ROW.set(text, failing)
  }
  return failing
}

/**
 * What the answers to BEGIN, held writes and COMMIT, sent together, say: committed; rolled back
 * because a write changed no row (`refused`) or failed (`failed`, the first failure: the
 * statements after it failed for it); or perhaps committed (`inDoubt`): no statement before
 * the COMMIT was refused by the server, and the COMMIT got no answer but a lost connection or
 * an ended session.
 */
export function heldOutcome (answers: ReadonlyArray<PromiseSettledResult<pg.QueryResult>>): 'committed' | 'refused' | { failed: unknown } | { inDoubt: unknown } {
  const commit = answers[answers.length - 1]
  if (commit?.status === 'fulfilled' && commit.value.command === 'COMMIT') return 'committed'
  const failed = answers.find((answer): answer is PromiseRejectedResult => answer.status === 'rejected')
  const refusedBefore = failed !== undefined && failed !== commit && failed.reason instanceof pg.DatabaseError
  if (!refusedBefore && commit?.status === 'rejected' && (!(commit.reason instanceof pg.DatabaseError) || endsPostgresSession(commit.reason))) return { inDoubt: commit.reason }
  if (failed === undefined || (failed.reason as { code?: unknown }).code === NO_ROW) return 'refused'
  return { failed: failed.reason }
}

/**
 * One PostgreSQL connection in pg's pipeline mode, for the prepared statements that run outside
 * transactions: the key-and-user read, the guarded UPDATE, the INSERT of a new user, the
 * idempotency claim and release; and the held writes of a keyed request, as one transaction
 * (see `transaction`). Statements from concurrent requests go out on it without
 * waiting for the answers before them, and one server process runs them back to back. Through
 * the pool, each took a connection of its own and woke a server process of its own for each
 * round trip: on the 2-core benchmark machine this doubles the PUTs a second (see README).
 *
 * Each statement is its own implicit transaction (pg sends a Sync after each), so a failing one
 * fails alone, unless sent inside `transaction`'s BEGIN and COMMIT. `run` resolves to undefined
 * when the statement should go through the pool instead: no connection, a lock held past
 * `PIPELINE_LOCK_TIMEOUT_MS`, or a statement sent behind a failed Parse of its own (see `run`).
 * It connects on first use and after a loss, and statements wait for that; once an attempt has
 * failed, the next ones (at most one a second) run in the background, so no statement waits out
 * another connect timeout before the pool's. A statement already sent is never sent again: if
 * the connection is lost under it, it fails, as it would on the pool.
 */
export class PostgresPipeline implements PipelineGauges {
  readonly handedToPool = { lockWait: 0, noConnection: 0, notPrepared: 0 }
  readonly #config: pg.ClientConfig
  readonly #onError: (error: Error) => void
  readonly #reconnectAfterMs: number
  #client: pg.Client | undefined
  #connecting: Promise<pg.Client | undefined> | undefined
  #lastFailure = -Infinity
  /** The last attempt to connect failed (reported once, until one succeeds). */
  #failing = false
  #closed = false

  /** `config` as for the pool's connections; `onError` hears of a lost connection, and of a failure to open one. */
  constructor (config: pg.ClientConfig, onError: (error: Error) => void, { reconnectAfterMs = RECONNECT_AFTER_MS } = {}) {
    this.#config = config
    this.#onError = onError
    this.#reconnectAfterMs = reconnectAfterMs
  }

  get open (): boolean {
    return this.#client !== undefined
  }

  async run (name: string, text: string, values: readonly unknown[]): Promise<QueryResult<unknown> | undefined> {
    const client = await this.#connection()
    if (client === undefined) return undefined
    let result: pg.QueryResult
    try {
      result = await client.query({ name, text, values: values as unknown[] })
    } catch (error) {
      if (this.#forThePool(client, error)) return undefined
      throw error
    }
    const { command, rowCount, rows } = result
    // As Kysely's PostgreSQL driver answers.
    const counted = command === 'INSERT' || command === 'UPDATE' || command === 'DELETE' || command === 'MERGE'
    return { numAffectedRows: counted ? BigInt(rowCount ?? 0) : undefined, rows: rows ?? [] }
  }

  /**
   * Makes `writes` in order in one transaction, sent together (BEGIN, the writes, COMMIT) so
   * that no other statement comes between them and no round trip holds their locks. Each is
   * sent so that it fails when it changes no row (see `failingOnNoRow`), which rolls the
   * transaction back. True once committed; false, with nothing written, when one changed no
   * row; undefined, with nothing written, when they should go through the pool instead (as
   * for `run`). Throws, with nothing written, when one fails; throws `HeldWritesInDoubt` when
   * the connection was lost with the COMMIT sent.
   */
  async transaction (writes: ReadonlyArray<{ name: string, text: string, values: readonly unknown[] }>): Promise<boolean | undefined> {
    const client = await this.#connection()
    if (client === undefined) return undefined
    // All sent before any answer, in this turn of the event loop: pg sends them in this order.
    const sent = [
      client.query('begin'),
      ...writes.map(async ({ name, text, values }) => await client.query({ name: `${name}_held`, text: failingOnNoRow(text), values: values as unknown[] })),
      client.query('commit')
    ]
    const outcome = heldOutcome(await Promise.allSettled(sent))
    if (outcome === 'committed') return true
    if (outcome === 'refused') return false
    if ('inDoubt' in outcome) {
      if (endsPostgresSession(outcome.inDoubt)) this.#drop(client, outcome.inDoubt as Error)
      throw new HeldWritesInDoubt(outcome.inDoubt)
    }
    if (this.#forThePool(client, outcome.failed)) return undefined
    throw outcome.failed
  }

  /** Waits for the statements sent, then ends the connection. */
  async close (): Promise<void> {
    this.#closed = true
    await this.#connecting
    const client = this.#client
    this.#client = undefined
    await client?.end()
  }

  /** The open connection, opened if need be; undefined, counted, when the pool must answer. */
  async #connection (): Promise<pg.Client | undefined> {
    let client = this.#client
    if (client === undefined) {
      // #connect never rejects: a failure resolves to undefined.
      if (this.#failing) this.#connect().catch(() => {})
      else client = await this.#connect()
    }
    if (client === undefined) this.handedToPool.noConnection++
    return client
  }

  /**
   * Whether a statement that failed with `error` never ran and should go through the pool
   * (counted); a failure that ends the session also drops the connection, at once, before
   * the next statement can be sent on it.
   */
  #forThePool (client: pg.Client, error: unknown): boolean {
    const code = (error as { code?: unknown }).code
    // lock_not_available: the pool waits longer.
    if (code === '55P03') {
      this.handedToPool.lockWait++
      return true
    }
    // The statement's Parse failed (its first use on this connection, say, waiting for a
    // migration's lock), and this one was sent behind it without a Parse of its own, as pg
    // counts the statement as sent: "does not exist". Or it was sent with one while another
    // Parse of it was under way: "already exists". Either way it never ran.
    if (code === '26000' || code === '42P05') {
      this.handedToPool.notPrepared++
      return true
    }
    if (endsPostgresSession(error)) this.#drop(client, error as Error)
    return false
  }

  /** The connection once open; undefined while none can be had (the pool answers meanwhile). */
  async #connect (): Promise<pg.Client | undefined> {
    if (this.#connecting !== undefined) return await this.#connecting
    if (this.#closed || performance.now() - this.#lastFailure < this.#reconnectAfterMs) return undefined
    const client = new pg.Client({ ...this.#config, pipeline: true } as pg.ClientConfig)
    // Without a listener, a lost connection's error would crash the process. (pg emits it
    // before 'end' when the socket closes unasked.)
    client.on('error', (error) => this.#drop(client, error))
    client.on('end', () => this.#drop(client))
    this.#connecting = (async () => {
      try {
        await client.connect()
        // A session setting, so that no DATABASE_URL parameter can lengthen it.
        await client.query(`set lock_timeout = ${PIPELINE_LOCK_TIMEOUT_MS}`)
      } catch (error) {
        this.#lastFailure = performance.now()
        client.end().catch(() => {})
        if (!this.#failing) this.#onError(new Error(`could not open the pipelined connection (${(error as Error).message}); statements go through the pool until it opens`, { cause: error }))
        this.#failing = true
        return undefined
      }
      this.#failing = false
      if (!this.#closed) return (this.#client = client)
      await client.end()
      return undefined
    })().finally(() => { this.#connecting = undefined })
    return await this.#connecting
  }

  /** When `client` is the open connection, takes no more statements on it and reports `error`, why it was lost. */
  #drop (client: pg.Client, error?: Error): void {
    if (this.#client !== client) return
    this.#client = undefined
    if (error !== undefined) this.#onError(error)
    client.end().catch(() => {})
  }
}

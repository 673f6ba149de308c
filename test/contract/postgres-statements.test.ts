import pg from 'pg'
import t from 'tap'
import { sql } from '../../src/adapters/persistence/kysely.js'
import { openPersistence } from '../../src/adapters/persistence/open-persistence.js'
import { postgresOrSkip } from '../helpers/databases.js'
import { freshClient, runHotStatements } from '../helpers/fixtures.js'
import { silenceableProxy } from '../helpers/silenceable-proxy.js'

const postgres = postgresOrSkip(t, 'the prepared-statement tests')

/** The service's pg pool, which its public type shows only by its gauges. */
function pgPool (service: { pool: unknown }): pg.Pool {
  if (!(service.pool instanceof pg.Pool)) throw new TypeError('the service has no pg pool')
  return service.pool
}

if (postgres !== undefined) {
  t.test('the hot queries are prepared once per pooled connection, and survive a migration that adds a column', async (t) => {
    // One connection and no pipelined one, so every query below runs on the session we inspect.
    const persistence = await openPersistence({ databaseUrl: await postgres.fresh(t), poolMax: 1, postgresPipeline: false })
    t.teardown(async () => await persistence.close())
    await runHotStatements(t, persistence)

    const prepared = await sql<{ name: string, statement: string }>`select name, statement from pg_prepared_statements order by statement`.execute(persistence.db)
    const statements = prepared.rows.map((r) => r.statement)
    t.ok(prepared.rows.every((r) => r.name.startsWith('klaim_')), 'only the named hot statements')
    t.match(statements, [
      /^delete from "idempotency_keys" where/,
      /^insert into "idempotency_keys"/,
      /^insert into "rate_limits"/,
      /^insert into "users"/,
      /^select "app_id", "klaim_id".* from "users" where/,
      /^select "id", .* from "api_keys"/,
      /^select "scope", "key".* from "idempotency_keys" where/,
      /^update "idempotency_keys" set "status" = \$1/,
      /^update "users" set "name" = \$1, "updated_at"/
    ])
    t.equal(statements.length, 9)

    // Another process's migration adds a column: with `select *` this process's prepared read
    // would fail with "cached plan must not change result type".
    await sql`alter table users add column nickname text`.execute(persistence.db)
    await sql`alter table idempotency_keys add column note text`.execute(persistence.db)
    await sql`alter table rate_limits add column note text`.execute(persistence.db)
    t.match(await persistence.users.findByUserId('app_1', 'ada'), { name: 'Ada', version: 2 })
    t.match(await persistence.idempotency.find('scope', 'k1'), { response: { status: 200 } })
    t.same(await persistence.rateCounter.hit('b', 60_000), { windowStart: 60_000, hits: 2 })
  })

  t.test('a lock nobody releases fails the request with a 503 after the lock timeout, and idle transactions end', async (t) => {
    const client = await freshClient(t, postgres, { lockTimeoutMs: 300 })
    await client.createUser({ email: 'ada@example.com', user_id: 'ada' })

    // Another client locks the row and never lets go, as one that vanished mid-transaction would.
    const { location } = client.service
    const other = new pg.Client({ connectionString: location.dialect === 'postgres' ? location.connectionString : '' })
    await other.connect()
    t.teardown(async () => await other.end())
    await other.query('begin')
    await other.query("select 1 from users where user_id = 'ada' for update")
    for (const headers of [{}, { 'idempotency-key': 'k1' }] as Array<Record<string, string>>) {
      const put = await client.put('ada', { name: 'Ada' }, headers)
      t.equal(put.statusCode, 503, `waits ${'idempotency-key' in headers ? 'for the row lock of the transaction' : 'in the UPDATE'}, then gives up`)
      t.same(put.json(), { message: 'The database is unavailable. Try again shortly.', code: 'unavailable' })
    }
    await other.query('commit')
    const put = await client.put('ada', { name: 'Ada' }, { 'idempotency-key': 'k1' })
    t.equal(put.statusCode, 200, 'the lock released, the same request succeeds (a 503 keeps no idempotency answer)')

    const settings = await pgPool(client.service).query<{ lock: string, idle: string }>("select current_setting('lock_timeout') as lock, current_setting('idle_in_transaction_session_timeout') as idle")
    t.same(settings.rows, [{ lock: '300ms', idle: '10s' }], 'every pooled session carries both limits')
  })

  t.test('a connection lost while a request holds it fails that request with a 503, not the process', async (t) => {
    // One pooled connection, so the next request waits for the very one that is lost; no
    // pipelined one (its losses are tested below), so every statement uses the pool.
    const client = await freshClient(t, postgres, { lockTimeoutMs: 60_000, poolMax: 1, postgresPipeline: false })
    await client.createUser({ email: 'ada@example.com', user_id: 'ada' })
    const { location } = client.service
    const pool = pgPool(client.service)
    const connectionString = location.dialect === 'postgres' ? location.connectionString : ''
    const [locker, admin] = [new pg.Client({ connectionString }), new pg.Client({ connectionString })]
    for (const other of [locker, admin]) {
      await other.connect()
      t.teardown(async () => await other.end())
    }
    type Held = pg.PoolClient & { processID: number, connection: pg.Connection }
    const held = new Map<number, Held>()
    pool.on('acquire', (client) => held.set((client as Held).processID, client as Held))

    // The request is made to wait for a row lock; then its connection goes, one way or another:
    // the server ends its session (an administrator, a restart, idle_in_transaction_session_timeout),
    // or the socket just closes, with no word from the server (a reset, a crashed backend).
    const losses: Array<[string, (pid: number) => Promise<unknown>]> = [
      ['the server terminates the session', async (pid) => await admin.query('select pg_terminate_backend($1)', [pid])],
      ['the socket closes', async (pid) => held.get(pid)?.connection.stream.destroy()]
    ]
    for (const [how, lose] of losses) {
      for (const keyed of [false, true]) {
        const headers = (n: number): Record<string, string> => keyed ? { 'idempotency-key': `k${n}-${how}` } : {}
        await locker.query('begin')
        await locker.query("select 1 from users where user_id = 'ada' for update")
        const put = client.put('ada', { name: 'Ada' }, headers(1))
        let waiting: number | undefined
        while (waiting === undefined) {
          const { rows } = await admin.query<{ pid: number }>("select pid from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'")
          waiting = rows[0]?.pid
        }
        const next = client.put('ada', { name: `Ada ${how}` }, headers(2))
        while (pool.waitingCount === 0) await new Promise((resolve) => setImmediate(resolve))
        await lose(waiting)
        const lost = await put
        await locker.query('rollback')
        t.equal(lost.statusCode, 503, `${how} (${keyed ? 'in a transaction' : 'alone'}): a 503`)
        t.same(lost.json(), { message: 'The database is unavailable. Try again shortly.', code: 'unavailable' })
        t.equal((await next).statusCode, 200, 'the next request, which waited for the connection, gets a new one')
      }
    }
  })

  t.test('connections that go silent fail their requests with a 503 within the statement timeout, and are replaced', async (t) => {
    const proxy = await silenceableProxy(t, new URL(await postgres.fresh(t)))
    // No pipelined connection (tested below), so every request meets a pooled one.
    const client = await freshClient(t, postgres, { databaseUrl: proxy.url, poolMax: 2, postgresStatementTimeoutMs: 300, postgresPipeline: false })
    const { app, service } = client
    await client.createUser({ email: 'ada@example.com', user_id: 'ada' })
    // Both pooled connections open, so each request below meets a silent one.
    await Promise.all([1, 2].map(async () => await client.request({ method: 'GET', url: '/users/ada' })))
    const settings = await pgPool(service).query<{ timeout: string }>("select current_setting('statement_timeout') as timeout")
    t.same(settings.rows, [{ timeout: '300ms' }], 'the server cancels a statement that runs longer')

    // The open connections lose every byte from now on, both ways, and nothing says so (a
    // partition, or a database host that vanished in a failover): TCP would retry for minutes.
    proxy.silence()
    for (const headers of [{}, { 'idempotency-key': 'k1' }] as Array<Record<string, string>>) {
      const put = await client.put('ada', { name: 'Ada' }, headers)
      t.equal(put.statusCode, 503, `the client stops waiting for an answer (${'idempotency-key' in headers ? 'in a transaction' : 'alone'})`)
      t.same(put.json(), { message: 'The database is unavailable. Try again shortly.', code: 'unavailable' })
    }
    t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200, 'the process is up')

    const put = await client.put('ada', { name: 'Ada' }, { 'idempotency-key': 'k1' })
    t.equal(put.statusCode, 200, 'the silent connections were given up, not pooled again: a new one serves the same request')
  })
}

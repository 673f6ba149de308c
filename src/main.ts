import { setFlagsFromString } from 'node:v8'
import type { FastifyBaseLogger } from 'fastify'
import { withoutPassword } from './adapters/persistence/database-url.js'
import { ConfigError, dataFolder, loadConfig, type Config } from './config.js'
import { ensureFirstApp } from './first-start.js'

/**
 * After each full collection V8 lets the heap grow by a factor it picks from how cheap collecting
 * is: up to 4 times what survived. Here about 30-50 MB survive, and under steady load the heap
 * grew to 150 MB between collections, RSS past 200 MB (230 MB in a 3-minute soak). At 1.5 times,
 * the same soak stays under 170 MB, at no measurable CPU cost (A/B: 160 against 160 µs a PUT).
 * Only the growth changes: the heap's hard limit stays Node's default. Set at start-up, before
 * the load: V8 applies it from the next collection on (the soak above shows it does).
 */
const HEAP_GROWING_PERCENT = 50

/** An error's message, for a line of `fail`'s. */
const messageOf = (error: unknown): string => error instanceof Error ? error.message : String(error)

/** Stops the process with one line on stderr and exit code 1, not a stack trace. */
function fail (message: string): never {
  process.stderr.write(`klaim-users: ${message.replace(/\s+/g, ' ')}\n`)
  process.exit(1)
}

function readConfig (): Config {
  try {
    return loadConfig()
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    fail(error.message)
  }
}

/** The composition root: config -> database -> migrate -> use cases -> HTTP. */
async function main (): Promise<void> {
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
  const config = readConfig()
  // Loaded once the settings are known to be good, as each is needed: a bad setting stops the
  // server in 0.3 s rather than 0.6, and a database it cannot open before Fastify is loaded.
  const { openUsersService } = await import('./users-service.js')
  // A database connection (pooled, pipelined, or SQLite's thread's) can fail at any time; it logs
  // once the app exists.
  const logs: { to?: FastifyBaseLogger } = {}
  const service = await openUsersService({
    databaseUrl: config.databaseUrl,
    poolMax: config.poolMax,
    postgresPipeline: config.postgresPipeline,
    sqliteSynchronous: config.sqliteSynchronous,
    onPoolError: (error) => logs.to?.warn({ err: error }, 'a database connection failed'),
    sqliteBackgroundCheckpoints: {
      onError: (error) => logs.to?.warn({ err: error }, 'the background WAL checkpoint failed; SQLite falls back to its own at 10,000 pages')
    }
  }).catch((error: unknown) => fail(`cannot open the database (${messageOf(error)})`))
  const { buildHttpApp, loggerOptions } = await import('./adapters/http/app.js')
  const app = await buildHttpApp({
    service,
    logger: loggerOptions(config.logLevel),
    rateLimitPerMinute: config.rateLimitPerMinute,
    authFailuresPerMinute: config.authFailuresPerMinute,
    rateCounter: config.rateLimitStore === 'database' ? service.rateCounter : undefined,
    trustProxy: config.trustProxy,
    metrics: config.metrics === false ? false : { ...config.metrics, pool: service.pool, pipeline: service.pipeline }
  })
  logs.to = app.log
  // Which database a server runs on, and what its start changed there: a DATABASE_URL left unset
  // in production is the embedded SQLite file, and a deploy that migrates says so.
  app.log.info({ database: withoutPassword(config.databaseUrl), migrated: service.migrated }, service.migrated.length > 0 ? 'database opened and migrated' : 'database opened, up to date')

  const { keyFile, noApp } = await ensureFirstApp(service, dataFolder(config.database))
    .catch((error: unknown) => fail(messageOf(error)))
  if (keyFile !== undefined) app.log.info({ keyFile }, 'created the app "default"; its API key is in this file')
  if (noApp) app.log.warn('the database has no app (its apps were deleted), so every request is refused: create one with the CLI\'s `apps create <name>`')

  // Idempotency keys live 24 hours; purge the expired ones now and then.
  const purge = (): void => {
    service.purgeExpiredIdempotencyKeys().catch((error: unknown) => app.log.warn({ err: error }, 'could not purge expired idempotency keys'))
  }
  purge()
  const purgeTimer = setInterval(purge, 60 * 60 * 1000).unref()

  // Marked in the database while it runs, so that `copy` refuses to copy what it is writing.
  const announcement = await service.announceServer({
    onError: (error) => app.log.warn({ err: error }, 'could not mark this server as running in the database; tried again in 10 s')
  })

  let stopping = false
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return
    stopping = true
    app.log.info({ signal }, 'stopping: finishing requests in flight')
    clearInterval(purgeTimer)
    await app.close()
    await announcement.stop().catch((error: unknown) => app.log.warn({ err: error }, 'could not unmark this server in the database; a copy is refused for 30 s more'))
    await service.close()
    process.exit(0)
  }
  const onSignal = (signal: string): void => {
    if (stopping) {
      // A second signal while requests finish (a second Ctrl-C): the operator will not wait.
      // What was committed is kept; a request not yet answered is cut off, as by a crash.
      app.log.warn({ signal }, 'stopping now, without finishing the requests in flight')
      process.exit(1)
    }
    stop(signal).catch((error: unknown) => {
      app.log.error({ err: error }, 'could not stop cleanly')
      process.exit(1)
    })
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)

  await app.listen({ port: config.port, host: config.host }).catch(async (error: unknown) => {
    // A port in use, an address not this host's: one line, once its mark is taken back (a copy
    // would be refused for 30 s on a server that never served).
    clearInterval(purgeTimer)
    await announcement.stop().catch(() => {})
    await service.close().catch(() => {})
    fail(`cannot listen (${messageOf(error)})`)
  })
}

await main()

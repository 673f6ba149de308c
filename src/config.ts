import { isIP } from 'node:net'
import { isAbsolute, dirname, resolve } from 'node:path'
import type { Static } from '@sinclair/typebox'
import { parseDatabaseUrl, withoutPassword, type DatabaseLocation } from './adapters/persistence/database-url.js'
import { Type, Value } from './typebox.js'

// Every setting, as the process sees it after defaults; checked once, at start.
const Settings = Type.Object({
  PORT: Type.Integer({ minimum: 0, maximum: 65535, description: 'listening port' }),
  HOST: Type.String({ minLength: 1 }),
  DATABASE_URL: Type.String({ pattern: '^(sqlite:.+|postgres(ql)?://.+)$', description: 'sqlite:<path>, sqlite::memory:, postgres://... or postgresql://...' }),
  LOG_LEVEL: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l))),
  RATE_LIMIT_PER_MINUTE: Type.Integer({ minimum: 0 }),
  AUTH_FAILURES_PER_MINUTE: Type.Integer({ minimum: 1 }),
  RATE_LIMIT_STORE: Type.Union([Type.Literal('memory'), Type.Literal('database')], { description: 'memory or database' }),
  DATABASE_POOL_MAX: Type.Integer({ minimum: 1, maximum: 1000 }),
  DATABASE_PIPELINE: Type.Union([Type.Literal('on'), Type.Literal('off')], { description: 'on or off' }),
  SQLITE_SYNCHRONOUS: Type.Union([Type.Literal('NORMAL'), Type.Literal('FULL')]),
  METRICS: Type.Union([Type.Literal('on'), Type.Literal('off')]),
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 1 })),
  TRUST_PROXY: Type.Optional(Type.String({ minLength: 1, description: 'comma-separated addresses or CIDR ranges of trusted proxies, or loopback, linklocal, uniquelocal' }))
})
type SettingValues = Static<typeof Settings>

const DEFAULTS: Record<keyof SettingValues, string | undefined> = {
  PORT: '3000',
  HOST: '127.0.0.1',
  DATABASE_URL: 'sqlite:./data/users.db',
  LOG_LEVEL: 'info',
  RATE_LIMIT_PER_MINUTE: '6000',
  AUTH_FAILURES_PER_MINUTE: '60',
  RATE_LIMIT_STORE: 'memory',
  DATABASE_POOL_MAX: '10',
  DATABASE_PIPELINE: 'on',
  SQLITE_SYNCHRONOUS: 'NORMAL',
  METRICS: 'on',
  METRICS_TOKEN: undefined,
  TRUST_PROXY: undefined
}
const NUMERIC = new Set(['PORT', 'RATE_LIMIT_PER_MINUTE', 'AUTH_FAILURES_PER_MINUTE', 'DATABASE_POOL_MAX'])
const LOWER_CASE = new Set(['METRICS', 'DATABASE_PIPELINE', 'RATE_LIMIT_STORE'])

export interface Config {
  port: number
  host: string
  databaseUrl: string
  database: DatabaseLocation
  logLevel: string
  rateLimitPerMinute: number
  authFailuresPerMinute: number
  /** Where the rate limits count: this process's memory, or the database, shared by every process. */
  rateLimitStore: 'memory' | 'database'
  poolMax: number
  /** PostgreSQL: statements outside transactions on one pipelined connection (DATABASE_PIPELINE=off: through the pool). */
  postgresPipeline: boolean
  sqliteSynchronous: 'NORMAL' | 'FULL'
  /** Serve /metrics (METRICS=off turns it off); METRICS_TOKEN protects it. */
  metrics: false | { token?: string }
  /** Proxies whose X-Forwarded-For names the client (TRUST_PROXY); none by default. */
  trustProxy: string[]
}

const PROXY_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal'])

/** One TRUST_PROXY entry: an address, a CIDR range, or one of proxy-addr's names. */
function isProxyEntry (entry: string): boolean {
  if (PROXY_NAMES.has(entry)) return true
  const [address = '', bits, ...rest] = entry.split('/')
  const family = isIP(address)
  if (family === 0 || rest.length > 0) return false
  return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128))
}

export class ConfigError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

/** Reads and checks every setting against one TypeBox schema; throws `ConfigError` with one clear sentence. */
export function loadConfig (env: NodeJS.ProcessEnv = process.env): Config {
  const raw: Record<string, unknown> = {}
  for (const [name, fallback] of Object.entries(DEFAULTS)) {
    const given = env[name] === undefined || env[name] === '' ? fallback : env[name]
    if (given === undefined) continue
    const value = name === 'SQLITE_SYNCHRONOUS' ? given.toUpperCase() : LOWER_CASE.has(name) ? given.toLowerCase() : given
    raw[name] = NUMERIC.has(name) ? (/^\d+$/.test(value) ? Number(value) : NaN) : value
  }
  const error = Value.Errors(Settings, raw).First()
  if (error !== undefined) {
    const name = error.path.slice(1)
    const schema = Settings.properties[name as keyof SettingValues] as { description?: string }
    throw new ConfigError(`${name} is invalid (${JSON.stringify(withoutPassword(env[name] ?? ''))}): ${schema?.description ?? error.message}`)
  }
  const settings = raw as SettingValues
  const trustProxy = settings.TRUST_PROXY?.split(',').map((entry) => entry.trim()) ?? []
  if (!trustProxy.every(isProxyEntry)) {
    throw new ConfigError(`TRUST_PROXY is invalid (${JSON.stringify(settings.TRUST_PROXY)}): ${Settings.properties.TRUST_PROXY.description ?? ''}`)
  }
  const database = parseDatabaseUrl(settings.DATABASE_URL)
  if (database === undefined) throw new ConfigError(`DATABASE_URL is invalid: ${Settings.properties.DATABASE_URL.description ?? ''}`)
  return {
    port: settings.PORT,
    host: settings.HOST,
    databaseUrl: settings.DATABASE_URL,
    database,
    logLevel: settings.LOG_LEVEL,
    rateLimitPerMinute: settings.RATE_LIMIT_PER_MINUTE,
    authFailuresPerMinute: settings.AUTH_FAILURES_PER_MINUTE,
    rateLimitStore: settings.RATE_LIMIT_STORE,
    poolMax: settings.DATABASE_POOL_MAX,
    postgresPipeline: settings.DATABASE_PIPELINE === 'on',
    sqliteSynchronous: settings.SQLITE_SYNCHRONOUS,
    metrics: settings.METRICS === 'off' ? false : settings.METRICS_TOKEN === undefined ? {} : { token: settings.METRICS_TOKEN },
    trustProxy
  }
}

/** Where the first API key is written: beside the SQLite file, else `./data/`. */
export function dataFolder (database: DatabaseLocation): string {
  if (database.dialect === 'sqlite' && database.filename !== ':memory:') {
    return dirname(isAbsolute(database.filename) ? database.filename : resolve(database.filename))
  }
  return resolve('data')
}

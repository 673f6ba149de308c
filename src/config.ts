import { isAbsolute, dirname, resolve } from 'node:path'
import { parseDatabaseUrl, type DatabaseLocation } from './adapters/persistence/database-url.js'

export interface Config {
  port: number
  host: string
  databaseUrl: string
  database: DatabaseLocation
  logLevel: string
  rateLimitPerMinute: number
  authFailuresPerMinute: number
  poolMax: number
  sqliteSynchronous: 'NORMAL' | 'FULL'
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

function integer (env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!/^\d+$/.test(raw) || value < min || value > max) throw new ConfigError(`${name} must be an integer from ${min} to ${max}, not "${raw}"`)
  return value
}

export class ConfigError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

/** Reads and checks every setting; throws `ConfigError` with one clear sentence. */
export function loadConfig (env: NodeJS.ProcessEnv = process.env): Config {
  const databaseUrl = env.DATABASE_URL === undefined || env.DATABASE_URL === '' ? 'sqlite:./data/users.db' : env.DATABASE_URL
  const database = parseDatabaseUrl(databaseUrl)
  if (database === undefined) throw new ConfigError('DATABASE_URL must be sqlite:<path>, sqlite::memory:, postgres://... or postgresql://...')
  const logLevel = env.LOG_LEVEL === undefined || env.LOG_LEVEL === '' ? 'info' : env.LOG_LEVEL
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`)
  const synchronous = (env.SQLITE_SYNCHRONOUS ?? 'NORMAL').toUpperCase()
  if (synchronous !== 'NORMAL' && synchronous !== 'FULL') throw new ConfigError('SQLITE_SYNCHRONOUS must be NORMAL or FULL')
  return {
    port: integer(env, 'PORT', 3000, 0, 65535),
    host: env.HOST === undefined || env.HOST === '' ? '127.0.0.1' : env.HOST,
    databaseUrl,
    database,
    logLevel,
    rateLimitPerMinute: integer(env, 'RATE_LIMIT_PER_MINUTE', 6000, 0, 1_000_000_000),
    authFailuresPerMinute: integer(env, 'AUTH_FAILURES_PER_MINUTE', 60, 1, 1_000_000_000),
    poolMax: integer(env, 'DATABASE_POOL_MAX', 10, 1, 1000),
    sqliteSynchronous: synchronous
  }
}

/** Where the first API key is written: beside the SQLite file, else `./data/`. */
export function dataFolder (database: DatabaseLocation): string {
  if (database.dialect === 'sqlite' && database.filename !== ':memory:') {
    return dirname(isAbsolute(database.filename) ? database.filename : resolve(database.filename))
  }
  return resolve('data')
}

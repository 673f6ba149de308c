/** Which unique index refused a write, from either driver's error; undefined for other errors. */
export function uniqueViolation (error: unknown): 'user_id' | 'email' | 'klaim_id' | undefined {
  if (typeof error !== 'object' || error === null) return undefined
  const { code, constraint, message } = error as { code?: unknown, constraint?: unknown, message?: unknown }
  let where: string
  if (code === '23505' && typeof constraint === 'string') where = constraint // PostgreSQL: the index name
  else if ((code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') && typeof message === 'string') where = message // SQLite: the columns
  else return undefined
  if (where.includes('email_key')) return 'email'
  if (where.includes('user_id')) return 'user_id'
  if (where.includes('klaim_id') || where.includes('users_pkey')) return 'klaim_id'
  return undefined
}

/** A foreign key refused a write (the referenced row is missing). */
export function foreignKeyViolation (error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return code === '23503' || code === 'SQLITE_CONSTRAINT_FOREIGNKEY'
}

const RETRYABLE_POSTGRES = new Set(['40001', '40P01']) // serialization_failure, deadlock_detected

/** The code of the error a SQLite statement fails with after waiting the lock timeout for another process's lock. */
export const SQLITE_LOCK_TIMEOUT = 'SQLITE_LOCK_TIMEOUT'

/** The code of the error the statements under way fail with when the SQLite thread stops other than by `close`. */
export const SQLITE_THREAD_STOPPED = 'SQLITE_THREAD_STOPPED'

/** SQLite found the lock it needs held by another connection (`SQLITE_BUSY` or an extended form of it). */
export function isSqliteBusy (error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY')
}

/** A transaction the database aborted to break a deadlock or keep serialisability, or SQLite's busy one: run it again. */
export function isRetryable (error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && (RETRYABLE_POSTGRES.has(code) || isSqliteBusy(error))
}

const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EPIPE', 'EHOSTUNREACH', 'EAI_AGAIN',
  '57P01', '57P02', '57P03', // admin_shutdown, crash_shutdown, cannot_connect_now
  '53000', '53100', '53200', '53300', // insufficient_resources, disk_full, out_of_memory, too_many_connections
  '55P03', '57014', // lock_not_available (lock_timeout), query_canceled (statement_timeout)
  SQLITE_LOCK_TIMEOUT, 'SQLITE_FULL', // the disk (or the database's page limit) is full
  SQLITE_THREAD_STOPPED,
  '08000', '08001', '08003', '08004', '08006' // connection exceptions
])

/**
 * A pg error after which its connection must take no more statements: the server ended the
 * session (a FATAL error: an administrator, a shutdown, idle_in_transaction_session_timeout;
 * the socket may not have closed yet), or pg got no answer in time and the connection still
 * waits for one (pg's 'Query read timeout').
 */
export function endsPostgresSession (error: unknown): boolean {
  const { severity, message } = (error ?? {}) as { severity?: unknown, message?: unknown }
  return severity === 'FATAL' || severity === 'PANIC' || message === 'Query read timeout'
}

/** The database is unreachable, refusing connections, timing out or out of room: a 503, not a 500. */
export function isUnavailable (error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false
  const { code, message } = error as { code?: unknown, message?: unknown }
  if (typeof code === 'string' && UNAVAILABLE_CODES.has(code)) return true
  return typeof message === 'string' && /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Client was closed and is not queryable|Query read timeout/i.test(message)
}

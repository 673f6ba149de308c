export type DialectName = 'sqlite' | 'postgres'

export type DatabaseLocation =
  | { dialect: Extract<DialectName, 'sqlite'>, filename: string }
  | { dialect: Extract<DialectName, 'postgres'>, connectionString: string }

/**
 * `sqlite:<path>` (relative to the working folder, or absolute), `sqlite::memory:`,
 * `postgres://...` or `postgresql://...`. Returns undefined for anything else.
 */
export function parseDatabaseUrl (url: string): DatabaseLocation | undefined {
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    try {
      const parsed = new URL(url)
      return parsed.hostname === '' && !parsed.searchParams.has('host') ? undefined : { dialect: 'postgres', connectionString: url }
    } catch {
      return undefined
    }
  }
  if (url.startsWith('sqlite:')) {
    const filename = url.slice('sqlite:'.length)
    return filename === '' ? undefined : { dialect: 'sqlite', filename }
  }
  return undefined
}

/**
 * `url` as it may be printed or logged: a password in it (`scheme://user:password@host`, or a
 * `password` or `sslpassword` query parameter, which node-postgres takes too) replaced by `***`,
 * whether or not the rest is a database URL this service takes (an error that names a bad setting
 * must not show its secret). Anything else stays as given.
 */
export function withoutPassword (url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/:@]*:)[^/]*@/i, '$1***@').replace(/([?&](?:ssl)?password=)[^&#]*/gi, '$1***')
}

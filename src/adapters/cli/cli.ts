import type { UsersService } from '../../users-service.js'
import { isUnknownApp } from '../../application/apps.js'
import { UserNotFoundError, UsersError } from '../../domain/errors.js'
import { parseDatabaseUrl, withoutPassword } from '../persistence/database-url.js'
import { CopyRefused, SnapshotEnded } from '../persistence/exported.js'
import { BackupRefused, backupSqliteFile } from '../persistence/sqlite-backup.js'

export interface CliIo {
  out: (line: string) => void
  err: (line: string) => void
  /** Resolves once the output has taken what was written (a reader that lags catches up). */
  drain?: () => Promise<void>
}

type Service = Pick<UsersService, 'createApp' | 'listApps' | 'deleteApp' | 'createApiKey' | 'listApiKeys' | 'revokeApiKey' | 'migrate' | 'getUser' | 'deleteUser' | 'exportUsers' | 'copyTo'>

/** Positional arguments, their count already checked against `Verb.args`. */
type Args = [string, string]

/**
 * A verb runs against the opened service (`run`: a fresh database is created and migrated first),
 * or on the database's URL alone (`runOnDatabase`: nothing is opened, created or migrated for it).
 */
type Verb = { usage: string, summary: string, args: number } & (
  | { run: (service: Service, args: Args, json: boolean, io: CliIo) => Promise<void> }
  | { runOnDatabase: (databaseUrl: string, args: Args, json: boolean, io: CliIo) => Promise<void> }
)

/** The CLI's words for an app id that names no app. */
const noApp = (appId: string): CliError => new CliError(`No app ${appId}. See the apps: apps list`)

/** Awaits a use case on an app, refusing an app id that names no app in the CLI's own words. */
async function ofApp<T> (appId: string, result: Promise<T>): Promise<T> {
  try {
    return await result
  } catch (error) {
    if (isUnknownApp(error)) throw noApp(appId)
    throw error
  }
}

/**
 * Awaits a use case on one user, saying in the CLI's own words which is missing: the app, or the
 * user in it (the use cases answer both as a missing user, as the HTTP API must).
 */
async function ofUser<T> (service: Service, appId: string, userId: string, result: Promise<T>): Promise<T> {
  try {
    return await result
  } catch (error) {
    if (!(error instanceof UserNotFoundError)) throw error
    if (!(await service.listApps()).some((app) => app.appId === appId)) throw noApp(appId)
    throw new CliError(`No user ${userId} in app ${appId}.`)
  }
}

const iso = (ms: number | null): string => ms === null ? '-' : new Date(ms).toISOString()
const count = (n: number, noun: string): string => `${n} ${noun}${n === 1 ? '' : 's'}`

const VERBS: Record<string, Verb> = {
  'apps create': {
    usage: 'apps create <name>',
    summary: 'Create an app and its first API key; prints one line of JSON: {"app_id","name","api_key"}. The key is shown only once.',
    args: 1,
    async run (service, [name], _json, io) {
      const app = await service.createApp({ name })
      io.out(JSON.stringify({ app_id: app.appId, name: app.name, api_key: app.apiKey }))
    }
  },
  'apps list': {
    usage: 'apps list [--json]',
    summary: 'List every app.',
    args: 0,
    async run (service, _args, json, io) {
      const apps = await service.listApps()
      if (json) return io.out(JSON.stringify(apps.map((a) => ({ app_id: a.appId, name: a.name, created_at: a.createdAt }))))
      if (apps.length === 0) return io.out('No apps. Create one: apps create <name>')
      for (const a of apps) io.out(`${a.appId}  ${a.name}  (created ${iso(a.createdAt)})`)
    }
  },
  'apps delete': {
    usage: 'apps delete <app_id> [--json]',
    summary: 'Delete an app with its users, its keys and the answers stored for its Idempotency-Keys. Its keys are revoked first; interrupted, run it again.',
    args: 1,
    async run (service, [appId], json, io) {
      const { app, users, keys, storedResponses } = await ofApp(appId, service.deleteApp({ appId }))
      if (json) return io.out(JSON.stringify({ app_id: app.appId, name: app.name, users, keys, stored_responses: storedResponses, deleted: true }))
      io.out(`Deleted app ${app.appId} (${app.name}): ${count(users, 'user')}, ${count(keys, 'key')}, ${count(storedResponses, 'stored response')}.`)
      // No start creates an app on a database that has held one: say what the operator must do.
      if ((await service.listApps()).length === 0) io.out('That was the last app: every request is refused until one is created (apps create <name>).')
    }
  },
  'keys create': {
    usage: 'keys create <app_id> [--json]',
    summary: 'Add an API key to an app. The key is shown only once.',
    args: 1,
    async run (service, [appId], json, io) {
      const key = await ofApp(appId, service.createApiKey({ appId }))
      if (json) return io.out(JSON.stringify({ key_id: key.keyId, app_id: key.appId, api_key: key.apiKey }))
      io.out(`Created key ${key.keyId} for ${key.appId}. Store it now; it is not shown again:`)
      io.out(key.apiKey)
    }
  },
  'keys list': {
    usage: 'keys list <app_id> [--json]',
    summary: "List an app's keys (prefixes only; keys are stored hashed).",
    args: 1,
    async run (service, [appId], json, io) {
      const keys = await ofApp(appId, service.listApiKeys({ appId }))
      if (json) return io.out(JSON.stringify(keys.map((k) => ({ key_id: k.keyId, app_id: k.appId, prefix: k.prefix, created_at: k.createdAt, revoked_at: k.revokedAt }))))
      if (keys.length === 0) return io.out(`No keys for ${appId}.`)
      for (const k of keys) io.out(`${k.keyId}  ${k.prefix}…  created ${iso(k.createdAt)}  ${k.revokedAt === null ? 'active' : `revoked ${iso(k.revokedAt)}`}`)
    }
  },
  'keys revoke': {
    usage: 'keys revoke <key_id> [--json]',
    summary: 'Revoke a key; it is refused from the next request on, in every process.',
    args: 1,
    async run (service, [keyId], json, io) {
      if (!await service.revokeApiKey({ keyId })) throw new CliError(`No key ${keyId}.`)
      io.out(json ? JSON.stringify({ key_id: keyId, revoked: true }) : `Revoked ${keyId}.`)
    }
  },
  migrate: {
    usage: 'migrate [--json]',
    summary: 'Apply pending database migrations (the server also does so at start).',
    args: 0,
    async run (service, _args, json, io) {
      const applied = await service.migrate()
      if (json) return io.out(JSON.stringify({ applied }))
      io.out(applied.length === 0 ? 'The database is up to date.' : `Applied: ${applied.join(', ')}`)
    }
  },
  backup: {
    usage: 'backup <file> [--json]',
    summary: 'Copy the SQLite database, consistent while servers run, to a new file (mode 0600).',
    args: 1,
    async runOnDatabase (databaseUrl, [file], json, io) {
      const location = parseDatabaseUrl(databaseUrl)
      if (location?.dialect !== 'sqlite' || location.filename === ':memory:') {
        throw new CliError('backup copies a SQLite database file; back up PostgreSQL with its own tools (pg_dump).')
      }
      let bytes
      try {
        bytes = backupSqliteFile(location.filename, file)
      } catch (error) {
        if (error instanceof BackupRefused) throw new CliError(error.message)
        throw error
      }
      io.out(json ? JSON.stringify({ database: location.filename, backup: file, bytes }) : `Backed up ${location.filename} to ${file} (${bytes} bytes).`)
    }
  },
  copy: {
    usage: 'copy <database_url> [--json]',
    summary: 'Copy every app, key, user and stored answer into another, empty database (SQLite or PostgreSQL), migrating it first. Refused while a server runs on this one: stop them first.',
    args: 1,
    async run (service, [databaseUrl], json, io) {
      if (parseDatabaseUrl(databaseUrl) === undefined) throw new CliError(`Not a database URL: ${withoutPassword(databaseUrl)} (sqlite:<path>, postgres://...)`)
      let copied
      try {
        copied = await service.copyTo({ databaseUrl })
      } catch (error) {
        if (error instanceof CopyRefused) throw new CliError(`Nothing copied: ${error.message}.`)
        throw error
      }
      const { apps, keys, users, storedResponses } = copied
      io.out(json
        ? JSON.stringify({ target: withoutPassword(databaseUrl), apps, keys, users, stored_responses: storedResponses })
        : `Copied ${count(apps, 'app')}, ${count(keys, 'key')}, ${count(users, 'user')} and ${count(storedResponses, 'stored response')} to ${withoutPassword(databaseUrl)}.`)
    }
  },
  'users get': {
    usage: 'users get <app_id> <user_id> [--json]',
    summary: 'Show one user of an app.',
    args: 2,
    async run (service, [appId, userId], json, io) {
      const user = await ofUser(service, appId, userId, service.getUser({ appId, userId }))
      io.out(json ? JSON.stringify(user) : JSON.stringify(user, null, 2))
    }
  },
  'users export': {
    usage: 'users export <app_id>',
    summary: 'Print every user of an app, one JSON line each (as users get --json), in user_id order.',
    args: 1,
    async run (service, [appId], _json, io) {
      try {
        await ofApp(appId, (async () => {
          for await (const user of service.exportUsers({ appId })) {
            io.out(JSON.stringify(user))
            await io.drain?.()
          }
        })())
      } catch (error) {
        if (error instanceof SnapshotEnded) throw new CliError('Export stopped: nothing was read from it for 10 minutes, so its snapshot ended (export into a file, or to a reader that keeps reading).')
        throw error
      }
    }
  },
  'users delete': {
    usage: 'users delete <app_id> <user_id> [--json]',
    summary: 'Erase one user of an app, and the answers stored for Idempotency-Keys that carry it.',
    args: 2,
    async run (service, [appId, userId], json, io) {
      const { user, storedResponses } = await ofUser(service, appId, userId, service.deleteUser({ appId, userId }))
      io.out(json
        ? JSON.stringify({ app_id: appId, user_id: user.userId, klaim_id: user.klaimId, stored_responses: storedResponses, deleted: true })
        : `Deleted user ${user.userId} (klaim_id ${user.klaimId}) of ${appId}, and ${count(storedResponses, 'stored response')}.`)
    }
  }
}

export class CliError extends Error {
  constructor (message: string, readonly exitCode = 1) {
    super(message)
  }
}

function help (): string {
  return ['Usage: npm run --silent cli -- <verb> [args] [--json]', '', 'Verbs:',
    ...Object.values(VERBS).map((v) => `  ${v.usage.padEnd(40)} ${v.summary}`),
    '', 'The database is DATABASE_URL (default sqlite:./data/users.db); a fresh one is migrated first.'].join('\n')
}

/** Parses argv into a verb; returns undefined after printing help. Throws `CliError` on misuse. */
export function parseArgs (argv: string[], io: CliIo): ParsedCommand | undefined {
  const json = argv.includes('--json')
  const wantsHelp = argv.includes('--help') || argv.includes('-h')
  const words = argv.filter((a) => a !== '--json' && a !== '--help' && a !== '-h')
  const name = [`${words[0] ?? ''} ${words[1] ?? ''}`, words[0] ?? ''].find((n) => n in VERBS)
  if (name === undefined) {
    if (wantsHelp || words.length === 0) { io.out(help()); return undefined }
    throw new CliError(`Unknown command "${words.join(' ')}".\n\n${help()}`, 2)
  }
  const verb = VERBS[name] as Verb
  if (wantsHelp) { io.out(`Usage: npm run --silent cli -- ${verb.usage}\n\n${verb.summary}`); return undefined }
  const args = words.slice(name.split(' ').length)
  if (args.length !== verb.args) throw new CliError(`Usage: npm run --silent cli -- ${verb.usage}`, 2)
  return { verb, args: args as Args, json }
}

export type ParsedCommand = { verb: Verb, args: Args, json: boolean }

/** The database a command runs on: its URL, and the service, opened only for a verb that needs it. */
export interface CommandTarget {
  databaseUrl: string
  openService: () => Promise<Service>
}

/** Runs one command; returns the exit code. */
export async function runCommand (parsed: ParsedCommand, target: CommandTarget, io: CliIo): Promise<number> {
  try {
    const { verb } = parsed
    if ('runOnDatabase' in verb) await verb.runOnDatabase(target.databaseUrl, parsed.args, parsed.json, io)
    else await verb.run(await target.openService(), parsed.args, parsed.json, io)
    return 0
  } catch (error) {
    if (error instanceof CliError) { io.err(error.message); return error.exitCode }
    if (error instanceof UsersError) {
      const details = (error as { errors?: Array<{ path: string, message: string }> }).errors?.map((e) => ` ${e.path} ${e.message}`).join(';') ?? ''
      io.err(`${error.message}${details}`)
      return 1
    }
    throw error
  }
}

import type { UsersService } from '../../users-service.js'
import { CliError, parseArgs, runCommand, type CliIo } from './cli.js'

const io: CliIo = { out: (line) => process.stdout.write(`${line}\n`), err: (line) => process.stderr.write(`${line}\n`) }

async function main (): Promise<number> {
  let parsed
  try {
    parsed = parseArgs(process.argv.slice(2), io)
  } catch (error) {
    if (!(error instanceof CliError)) throw error
    io.err(error.message)
    return error.exitCode
  }
  if (parsed === undefined) return 0
  // Loaded only for a command to run: `--help` and a usage error answer without the service's
  // modules (about 0.35 s of a command's start).
  const { ConfigError, loadConfig } = await import('../../config.js')
  const { openUsersService } = await import('../../users-service.js')
  let config
  try {
    config = loadConfig()
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    io.err(`klaim-users: ${error.message}`)
    return 2
  }
  const { databaseUrl, sqliteSynchronous } = config
  let service: UsersService | undefined
  const openService = async (): Promise<UsersService> => {
    try {
      service = await openUsersService({ databaseUrl, poolMax: 2, sqliteSynchronous })
      return service
    } catch (error) {
      throw new CliError(`klaim-users: cannot open the database: ${(error as Error).message}`)
    }
  }
  try {
    return await runCommand(parsed, { databaseUrl, openService }, io)
  } finally {
    await service?.close()
  }
}

process.exitCode = await main()

import { ConfigError, loadConfig } from '../../config.js'
import { openUsersService } from '../../users-service.js'
import { CliError, parseArgs, runCommand, runsOnDatabase, type CliIo } from './cli.js'

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
  let config
  try {
    config = loadConfig()
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    io.err(`klaim-users: ${error.message}`)
    return 2
  }
  if (runsOnDatabase(parsed)) return await runCommand(parsed, config.databaseUrl, io)
  let service
  try {
    service = await openUsersService({ databaseUrl: config.databaseUrl, poolMax: 2, sqliteSynchronous: config.sqliteSynchronous })
  } catch (error) {
    io.err(`klaim-users: cannot open the database: ${(error as Error).message}`)
    return 1
  }
  try {
    return await runCommand(parsed, service, io)
  } finally {
    await service.close()
  }
}

process.exitCode = await main()

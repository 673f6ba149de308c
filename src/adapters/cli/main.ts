import { once } from 'node:events'
import type { UsersService } from '../../users-service.js'
import { CliError, parseArgs, runCommand, type CliIo } from './cli.js'

// A reader that stops early (`users export … | head`) closes the pipe: the command then stops
// quietly, exit 0, instead of dying of EPIPE with a stack trace.
class OutputClosed extends Error {}
let outputClosed = false
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error
  outputClosed = true
})
const io: CliIo = {
  out: (line) => {
    if (outputClosed) throw new OutputClosed()
    process.stdout.write(`${line}\n`)
  },
  err: (line) => process.stderr.write(`${line}\n`),
  // A pipe takes what its reader has read: without waiting for it, a million users exported to
  // a pipe were all held in memory (1.2 GB), against 130 MB into a file.
  drain: async () => {
    if (!process.stdout.writableNeedDrain) return
    try {
      await once(process.stdout, 'drain')
    } catch {
      throw new OutputClosed()
    }
  }
}

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

process.exitCode = await main().catch((error: unknown) => {
  if (error instanceof OutputClosed) return 0
  throw error
})

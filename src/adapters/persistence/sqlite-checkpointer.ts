import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'

/** How often the worker copies the WAL back into the database file. */
const CHECKPOINT_EVERY_MS = 100
/** SQLite's own checkpoint, kept on the request connections in case the worker falls behind. */
export const SAFETY_NET_CHECKPOINT_PAGES = 10_000
/**
 * The size the WAL file is cut back to when it starts over after a complete checkpoint. A burst
 * of writes, or a long read that holds checkpoints back, can grow it far past the safety net's
 * 10,000 pages (about 40 MB), and SQLite would otherwise keep the file at its largest size for
 * good. Above the safety net, so steady writes never pay for the cut.
 */
export const WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024

/**
 * How to start a worker from a CommonJS script given as text. It takes none of the host's Node
 * flags: under `--input-type=module` it would read its script as an ES module (and fail on
 * `require`), and a loader's hooks (a test runner's, say) have nothing to do in it.
 */
export const EVAL_WORKER = { eval: true, execArgv: [] }

// A CommonJS script, so it runs the same from the compiled package and from the TypeScript tests.
const WORKER_SOURCE = `
const { closeSync, fdatasyncSync, openSync } = require('node:fs')
const { workerData, parentPort } = require('node:worker_threads')
const Database = require(workerData.betterSqlite3)
const db = new Database(workerData.filename)
db.pragma('busy_timeout = 5000')
const file = openSync(workerData.filename, 'r')
const checkpoint = db.prepare('pragma wal_checkpoint(PASSIVE)')
let copied = 0
let failing
const timer = setInterval(() => {
  try {
    const { checkpointed } = checkpoint.get()
    // SQLite syncs the database file only when a checkpoint ends with the WAL's last frame still
    // the last, which under steady writes the worker's rarely do: the pages they copy would stay
    // dirty until the request connection's own checkpoint wrote them all out in one long fsync
    // (50-60 ms with a million users). Synced here instead, after each pass that copied any.
    if (checkpointed > 0 && checkpointed !== copied) fdatasyncSync(file)
    copied = checkpointed
    failing = undefined
  } catch (error) {
    // Said once per run of the same failure, not every 100 ms.
    const message = String(error && error.message)
    if (message !== failing) parentPort.postMessage(message)
    failing = message
  }
}, workerData.everyMs)
parentPort.on('message', () => { clearInterval(timer); db.close(); closeSync(file); parentPort.close() })
`

/**
 * Checkpoints a WAL database from a worker thread. SQLite's automatic checkpoint runs inside
 * the commit that crosses 1000 WAL pages: a few milliseconds of copying and an fsync, with the
 * event loop and every request in flight stalled behind it. Here another connection copies the
 * WAL back every 100 ms, off the event loop (PASSIVE: it never blocks readers or writers), and
 * syncs the database file after each pass that copied pages.
 * The request connections keep an automatic checkpoint at 10,000 pages: a safety net should the
 * worker fail, and what resets the WAL under steady writes (the worker's passes seldom end with
 * nothing committed after them).
 */
export class SqliteCheckpointer {
  readonly #worker: Worker
  readonly #exited: Promise<void>

  constructor (filename: string, onError: (error: Error) => void) {
    this.#worker = new Worker(WORKER_SOURCE, {
      ...EVAL_WORKER,
      workerData: { filename, betterSqlite3: createRequire(import.meta.url).resolve('better-sqlite3'), everyMs: CHECKPOINT_EVERY_MS },
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 }
    })
    this.#exited = new Promise((resolve) => this.#worker.once('exit', () => resolve()))
    this.#worker.on('error', onError)
    this.#worker.on('message', (message: string) => onError(new Error(`background checkpoint failed: ${message}`)))
    // Never what keeps the process alive.
    this.#worker.unref()
  }

  /** Stops the worker and closes its connection. */
  async stop (): Promise<void> {
    // Held until it has closed its connection, so the process waits for that.
    this.#worker.ref()
    this.#worker.postMessage('stop')
    await this.#exited
  }
}

/**
 * Why better-sqlite3 cannot run on a Node release, or undefined when it can.
 *
 * better-sqlite3 12 (the line that still runs on Node 20) derives its objects from Node's
 * `ObjectWrap`. Node 26.4 changed that class to register a cleanup hook per object and remove it
 * when the object is collected. Node 24.19 took the change without the runtime support it needs,
 * so an addon built against 24.19's headers or newer (any build made on a current 24 release, or
 * a prebuilt binary) aborts the process on any 24.x when one of its objects is collected with no
 * JavaScript environment current, as at a worker thread's exit or in an idle-time collection
 * (nodejs/node#65446): every 24.x is refused, as the release alone does not tell how the addon
 * was built. On 26.0-26.3 an addon built against 26.4's headers or newer, as a prebuilt binary
 * may be, aborts the same way (nodejs/node#65262). Measured here: on Node 24.21.0, 7 of the
 * suite's test files aborted (`Assertion failed: (env) != nullptr`); on 22.23.3, 22.23.5 and
 * 26.12.1, none.
 *
 * So the service refuses to open SQLite on those releases, at once and in words, rather than
 * abort some time later with a request in flight. PostgreSQL opens no SQLite object, and runs.
 */
export function sqliteRuntimeProblem (nodeVersion: string): string | undefined {
  const [major = 0, minor = 0] = nodeVersion.split('.').map(Number)
  if (major === 24 || (major === 26 && minor < 4)) {
    return `SQLite cannot run on Node ${nodeVersion}: better-sqlite3 12 aborts the process there when one of its objects is collected ` +
      '(nodejs/node#65446, #65262). Run Node 20.12+, 22 or 26.4+, or use PostgreSQL.'
  }
  return undefined
}

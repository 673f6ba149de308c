export const CONNECTIONS: number
/** Requests for one connection to `host` (`perConnection` of them), rendered. */
export type Prepare = (perConnection: number, host: string) => Buffer[]
export function userLoad (method: 'GET' | 'PUT', users: number, apiKey: string, options?: { keyed?: boolean }): Prepare
export interface Row {
  url: string
  /** The rate the row last ran at, req/s: how many requests each connection is given. */
  rps: number
  prepare?: Prepare
  requests?: unknown[]
}
export interface LoadResult { rps: number, p50: number, p99: number, non2xx: number, errors: number, total: number }
export function load (row: Row, seconds: number, limits?: Record<string, unknown>): Promise<LoadResult>

export interface Cluster {
  url: string
  port: number
  readonly pid: number | undefined
  /** Stops the server but keeps its data and port. */
  pause(): Promise<void>
  /** Starts a paused server again on the same port. */
  resume(): Promise<void>
  stop(): Promise<void>
  kill(): void
}
export function findPostgresBin (): string | undefined
export function startCluster (options?: { bin?: string, log?: (line: string) => void, inMemory?: boolean }): Promise<Cluster>
export function freePort (): Promise<number>

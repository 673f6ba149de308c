export interface Cluster {
  url: string
  port: number
  pid: number | undefined
  stop(): Promise<void>
  kill(): void
}
export function findPostgresBin (): string | undefined
export function startCluster (options?: { bin?: string, log?: (line: string) => void }): Promise<Cluster>

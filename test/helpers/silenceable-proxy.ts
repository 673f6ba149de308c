import net from 'node:net'
import type { Test } from 'tap'

export interface SilenceableProxy {
  /** `target` with the proxy's address instead. */
  url: string
  /**
   * Silences the connections open through the proxy (or only the one whose client end is on
   * `clientPort`): they stay open but carry no byte either way, as over a partition. `dropped`
   * resolves when a client first sends a byte that is not passed on.
   */
  silence(clientPort?: number): { dropped: Promise<void> }
}

/** A TCP proxy to `target` whose connections can be silenced; connections made after that get through. */
export async function silenceableProxy (t: Test, target: URL): Promise<SilenceableProxy> {
  const open = new Set<{ silent: boolean, sockets: net.Socket[] }>()
  let dropped = (): void => {}
  const server = net.createServer((downstream) => {
    const upstream = net.connect(Number(target.port), target.hostname)
    const pair = { silent: false, sockets: [downstream, upstream] }
    open.add(pair)
    for (const [from, to] of [[downstream, upstream], [upstream, downstream]] as const) {
      from.on('data', (chunk) => {
        if (!pair.silent) to.write(chunk)
        else if (from === downstream) dropped()
      })
      from.on('close', () => { to.destroy(); open.delete(pair) })
      from.on('error', () => {})
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const pair of open) for (const socket of pair.sockets) socket.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
  const url = new URL(target)
  url.host = `127.0.0.1:${(server.address() as net.AddressInfo).port}`
  return {
    url: url.toString(),
    silence (clientPort) {
      for (const pair of open) if (clientPort === undefined || pair.sockets[0]?.remotePort === clientPort) pair.silent = true
      return { dropped: new Promise<void>((resolve) => { dropped = resolve }) }
    }
  }
}

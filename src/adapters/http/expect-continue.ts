import type { IncomingMessage, Server, ServerResponse } from 'node:http'

const AWAITING_CONTINUE = new WeakSet<IncomingMessage>()

/**
 * Holds back the `100 Continue` that Node sends by itself, as soon as the headers arrive, to a
 * request with `Expect: 100-continue`: a client with a wrong key, or with a body refused from its
 * headers, would send the body only to be refused. Such a request is then served as any other,
 * and `sendContinue` sends the 100 once the checks made from its headers have passed. A request
 * answered without it gets its final status at once, and Node closes the connection after it,
 * as the client may send the body anyway.
 */
export function holdContinue (server: Server): void {
  server.on('checkContinue', (request: IncomingMessage, response: ServerResponse) => {
    AWAITING_CONTINUE.add(request)
    server.emit('request', request, response)
  })
}

/** Sends the `100 Continue` a held request waits for before it sends its body; once. */
export function sendContinue (request: IncomingMessage, response: ServerResponse): void {
  if (AWAITING_CONTINUE.delete(request)) response.writeContinue()
}

const UNMET_EXPECTATION = new WeakSet<IncomingMessage>()

/**
 * Serves a request whose `Expect` names anything but 100-continue (RFC 9110, 10.1.1), which Node
 * otherwise answers itself with a bare 417: no body, no request id, no log line. Served as any
 * other, `unmetExpectation` tells the app's first hook to refuse it, in the service's own shape.
 */
export function serveUnmetExpectations (server: Server): void {
  server.on('checkExpectation', (request: IncomingMessage, response: ServerResponse) => {
    UNMET_EXPECTATION.add(request)
    server.emit('request', request, response)
  })
}

/** Whether the request's `Expect` names something the service cannot do (see `serveUnmetExpectations`). */
export const unmetExpectation = (request: IncomingMessage): boolean => UNMET_EXPECTATION.has(request)

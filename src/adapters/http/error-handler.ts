import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import type { FieldError } from '../../domain/errors.js'
import { foundInWholeBody } from './json-body.js'
import { HttpProblem, problemBody, toProblem } from './problems.js'
import { validationProblem, type RequestPart } from './validation.js'

// In-process names of the use cases, as the HTTP client knows them.
const HTTP_PATHS: Record<string, string> = { '/userId': '/user_id', '/ifMatch': '/header/if-match', '/ifNoneMatch': '/header/if-none-match' }

function toHttpPath ({ path, message }: FieldError): FieldError {
  const head = /^\/[^/]*/.exec(path)?.[0] ?? ''
  const renamed = HTTP_PATHS[head]
  return renamed === undefined ? { path, message } : { path: renamed + path.slice(head.length), message }
}

/** The one place where anything thrown while serving a request becomes the response. */
export function sendProblem (error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const validation = (error as FastifyError).validation
  let problem = validation === undefined
    ? toProblem(error)
    : validationProblem(((error as FastifyError).validationContext ?? 'body') as RequestPart, validation as never[], request.body)
  if (problem.errors !== undefined && !(error instanceof HttpProblem) && validation === undefined) {
    problem = new HttpProblem(problem.statusCode, problem.code, problem.message, problem.headers, problem.errors.map(toHttpPath))
  }
  if (problem.statusCode >= 500) request.log.error({ err: error }, 'request failed')
  // Fastify asked to close the connection, but the client has sent its whole request.
  if (foundInWholeBody(error)) reply.removeHeader('connection')
  return reply.code(problem.statusCode).headers(problem.headers).send(problemBody(problem))
}

/** One offending field: a JSON Pointer into the input and what is wrong with it. */
export interface FieldError {
  path: string
  message: string
}

/** Base of every error the use cases throw on purpose; `code` is stable and public. */
export abstract class UsersError extends Error {
  abstract readonly code: string

  constructor (message: string) {
    super(message)
    this.name = new.target.name
  }
}

export const INVALID_REQUEST = 'The request is invalid.'

export class ValidationError extends UsersError {
  readonly code = 'validation_failed'
  readonly errors: FieldError[]

  constructor (errors: FieldError[], message = INVALID_REQUEST) {
    super(message)
    this.errors = errors
  }
}

export class UserNotFoundError extends UsersError {
  readonly code = 'user_not_found'

  constructor () {
    super('Can not find user with the given user_id.')
  }
}

export class UserIdTakenError extends UsersError {
  readonly code = 'user_id_taken'

  constructor () {
    super('User ID already exists')
  }
}

export class EmailTakenError extends UsersError {
  readonly code = 'email_taken'

  constructor () {
    super('Email already exists')
  }
}

/** The messages of a 412: `If-Match` matched no current tag; `If-None-Match` matched it. */
export const PRECONDITION_MESSAGES = {
  ifMatch: 'The user was modified since it was read.',
  ifNoneMatch: 'The user matches If-None-Match.'
} as const

export class PreconditionFailedError extends UsersError {
  readonly code = 'precondition_failed'

  constructor (failed: keyof typeof PRECONDITION_MESSAGES = 'ifMatch') {
    super(PRECONDITION_MESSAGES[failed])
  }
}

export class IdempotencyKeyReusedError extends UsersError {
  readonly code = 'idempotency_key_reused'

  constructor () {
    super('This Idempotency-Key was already used with a different request.')
  }
}

export class IdempotencyInProgressError extends UsersError {
  readonly code = 'idempotency_in_progress'

  constructor () {
    super('A request with this Idempotency-Key is still in progress.')
  }
}

/** Every error a use case throws on purpose. Adding one here forces the HTTP status table to name it. */
export type DomainError =
  | ValidationError
  | UserNotFoundError
  | UserIdTakenError
  | EmailTakenError
  | PreconditionFailedError
  | IdempotencyKeyReusedError
  | IdempotencyInProgressError

export type DomainErrorCode = DomainError['code']

export { openUsersService, type UsersService, type UsersServiceOptions } from './users-service.js'
export { usersHttpPlugin, type UsersHttpOptions, type UsersHttpService } from './adapters/http/users-plugin.js'
export { buildHttpApp } from './adapters/http/app.js'
export { holdContinue } from './adapters/http/expect-continue.js'
export { CopyRefused, SnapshotEnded, type CopiedCounts, type ServerAnnouncement } from './adapters/persistence/exported.js'
export {
  UsersError, ValidationError, UserNotFoundError, UserIdTakenError, EmailTakenError, PreconditionFailedError,
  type DomainError, type DomainErrorCode, type FieldError
} from './domain/errors.js'
export type { UserProfile, JsonObject, JsonValue, AcquisitionSource, User } from './domain/user.js'
export type { ProfileChanges } from './domain/profile-rules.js'
export type { UserRepository, UnitOfWork, Transactor, ReadSnapshot, AppRepository, DeletedApp, StoredKey, UserSnapshot, Clock, IdSource } from './application/ports.js'
export type { UpdateUserProfileCommand } from './application/update-user-profile.js'
export type { CreateUserCommand } from './application/create-user.js'
export type { DeletedUser } from './application/delete-user.js'

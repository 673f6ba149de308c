export type JsonValue = string | number | boolean | null | JsonValue[] | JsonObject
export interface JsonObject { [key: string]: JsonValue }

export const ACQUISITION_SOURCES = ['api', 'promotion', 'member_manual'] as const
export type AcquisitionSource = typeof ACQUISITION_SOURCES[number]

/** The fields of the user resource, which every user carries, stored or returned. */
interface ProfileFields {
  klaimId: string
  userId: string
  email: string
  name: string | null
  metadata: JsonObject
  creditBalance: number
  acquisitionSource: AcquisitionSource
  createdAt: number
  updatedAt: number
}

/** A user profile as the service stores it. `version` grows by one with every real change. */
export interface User extends ProfileFields {
  appId: string
  version: number
}

/** The user as callers see it: the resource's fields and its entity tag. */
export interface UserProfile extends ProfileFields {
  etag: string
}

/**
 * The key under which an email is unique within an app. Folding happens here, once, so that
 * every database agrees on non-ASCII addresses (SQL `lower()` differs between engines).
 */
export function emailKey (email: string): string {
  return email.toLowerCase()
}

/** A strong validator: klaim_id is unique service-wide, so the tag never matches another user. */
export function userEtag (user: Pick<User, 'klaimId' | 'version'>): string {
  return `"${user.klaimId}.${user.version}"`
}

export function toProfile (user: User): UserProfile {
  return {
    klaimId: user.klaimId,
    userId: user.userId,
    email: user.email,
    name: user.name,
    metadata: user.metadata,
    creditBalance: user.creditBalance,
    acquisitionSource: user.acquisitionSource,
    createdAt: user.createdAt,
    updatedAt: user.updatedAt,
    etag: userEtag(user)
  }
}

const KLAIM_ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
export const KLAIM_ID_SUFFIX_LENGTH = 5

/**
 * `<creation epoch ms>_<5 characters of [A-Za-z0-9]>`. `pick(n)` returns a uniform integer in
 * [0, n); the caller supplies the randomness so the domain stays pure.
 */
export function klaimId (createdAt: number, pick: (n: number) => number): string {
  let suffix = ''
  for (let i = 0; i < KLAIM_ID_SUFFIX_LENGTH; i++) suffix += KLAIM_ID_ALPHABET[pick(KLAIM_ID_ALPHABET.length)]
  return `${createdAt}_${suffix}`
}

import type { User } from '../../src/domain/user.js'

/** A stored user for unit tests of the domain. */
export function sampleUser (overrides: Partial<User> = {}): User {
  return {
    appId: 'app',
    klaimId: '1_abcde',
    userId: 'ada',
    email: 'ada@example.com',
    name: null,
    metadata: {},
    creditBalance: 0,
    acquisitionSource: 'api',
    createdAt: 1,
    updatedAt: 1,
    version: 1,
    ...overrides
  }
}

/** How many times each status came back. */
export function tally (statuses: number[]): Record<number, number> {
  const counts: Record<number, number> = {}
  for (const s of statuses) counts[s] = (counts[s] ?? 0) + 1
  return counts
}

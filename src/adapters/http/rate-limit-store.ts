import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit'
import type { RateCounter } from '../../application/ports.js'

type Counted = Parameters<FastifyRateLimitStore['incr']>[1]

/**
 * A store for `@fastify/rate-limit` that counts in `counter`, shared by every process on the
 * database, where the plugin's own store counts in this process's memory. Windows are fixed and
 * aligned to the clock (a one-minute window starts at each minute), so that every process counts
 * in the same one. The first time a process counts in a new window, it deletes the buckets last
 * counted before the window before it (they would start again at 1 anyway).
 */
export function sharedRateLimitStore (counter: RateCounter, now: () => number = Date.now): FastifyRateLimitStoreCtor {
  let purgedBefore = 0
  return class SharedRateLimitStore implements FastifyRateLimitStore {
    incr (key: string, done: Counted, timeWindow: number): void {
      const time = now()
      const windowStart = time - (time % timeWindow)
      counter.hit(key, windowStart).then(({ windowStart: start, hits }) => {
        done(null, { current: hits, ttl: Math.min(timeWindow, Math.max(0, start + timeWindow - time)) })
      }, (error: Error) => { done(error) })
      const before = windowStart - timeWindow
      if (before > purgedBefore) {
        purgedBefore = before
        // Not awaited, and its failure is not the request's: the next window's purge deletes
        // what this one left, as it deletes every older bucket.
        counter.purge(before).catch(() => {})
      }
    }

    child (): SharedRateLimitStore {
      return this
    }
  }
}

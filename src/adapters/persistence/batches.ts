/**
 * Rows are deleted this many at a time. An hour of keyed requests can be millions of rows:
 * deleted at once on SQLite, that holds the event loop and the file's write lock for seconds
 * (about 0.5 s per 200,000 rows here); in batches, a few milliseconds at a time.
 */
export const DELETE_BATCH = 1000

/**
 * Runs `deleteBatch` (a DELETE of at most DELETE_BATCH rows, answering how many it deleted)
 * until a batch comes back short; returns how many rows were deleted in all. After each full
 * batch it pauses as long as the batch took, so other writers get the database at least half
 * the time: SQLite's write lock goes to whoever asks first, and a loop asking again at once kept
 * it from the statement thread and from other processes (PUTs waited up to 2 s for it while
 * 1,000,000 rows went). The pause also lets this event loop's requests in.
 */
export async function deleteInBatches (deleteBatch: () => Promise<{ numDeletedRows: bigint }>): Promise<number> {
  let deleted = 0
  for (;;) {
    const started = performance.now()
    const batch = Number((await deleteBatch()).numDeletedRows)
    deleted += batch
    if (batch < DELETE_BATCH) return deleted
    await pauseSince(started)
  }
}

/** Waits as long as has passed since `started` (a `performance.now()`): see `deleteInBatches`. */
export async function pauseSince (started: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, performance.now() - started))
}

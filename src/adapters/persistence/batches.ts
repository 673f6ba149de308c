/**
 * Rows are deleted this many at a time. An hour of keyed requests can be millions of rows:
 * deleted at once on SQLite, that holds the event loop and the file's write lock for seconds
 * (about 0.5 s per 200,000 rows here); in batches, a few milliseconds at a time.
 */
export const DELETE_BATCH = 1000

/**
 * Runs `deleteBatch` (a DELETE of at most DELETE_BATCH rows, answering how many it deleted)
 * until a batch comes back short; returns how many rows were deleted in all.
 */
export async function deleteInBatches (deleteBatch: () => Promise<{ numDeletedRows: bigint }>): Promise<number> {
  let deleted = 0
  for (;;) {
    const batch = Number((await deleteBatch()).numDeletedRows)
    deleted += batch
    if (batch < DELETE_BATCH) return deleted
    // SQLite runs a statement on the event loop: let requests in between batches.
    await new Promise((resolve) => setImmediate(resolve))
  }
}

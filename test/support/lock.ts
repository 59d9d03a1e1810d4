/**
 * Holding serve's writer for a test: a transaction of the test's own that locks
 * `feed_values`, so the next batch waits on it until `release`.
 *
 * @module
 */
import type { TestDatabase } from "./db.ts";

/** A held lock; `release` rolls it back (again: a no-op). */
export interface HeldLock {
  release(): Promise<void>;
}

/** Locks `feed_values` in a transaction of its own. */
export async function lockFeedValues(db: TestDatabase): Promise<HeldLock> {
  const blocker = await db.sql.reserve();
  await blocker`begin`;
  await blocker`lock table feed_values in exclusive mode`;
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      try {
        await blocker`rollback`;
      } finally {
        blocker.release();
      }
    },
  };
}

/**
 * The rate limit of what serve publishes to users (reject feedback on `{user_id}/errors`,
 * src/ops/feedback.ts; alert events on `{user_id}/alerts`, src/ops/alerts.ts): a token
 * bucket per user and one over all users, so a flood cannot turn feedline into an
 * amplifier. What is held back is counted per user, for its next message (`suppressed`).
 */

/** Users tracked at once; beyond it, messages of new users are held back. */
const MAX_TRACKED_USERS = 10_000;

/** One user's bucket. */
export interface Bucket {
  tokens: number;
  at: number;
  /** Messages held back since the last one sent; the caller resets it once one is. */
  suppressed: number;
}

/** Per-user and global token buckets. */
export class UserRateLimit {
  readonly #perUserPerMinute: number;
  readonly #globalPerSecond: number;
  readonly #buckets = new Map<string, Bucket>();
  readonly #global: Bucket;

  constructor(perUserPerMinute: number, globalPerSecond: number, now: number) {
    this.#perUserPerMinute = perUserPerMinute;
    this.#globalPerSecond = globalPerSecond;
    this.#global = { tokens: globalPerSecond, at: now, suppressed: 0 };
  }

  /**
   * Takes a token for one message of `user`: its bucket when the message may go, null
   * when it is held back (and counted in the bucket's `suppressed`, if it has one).
   */
  take(user: string, now: number): Bucket | null {
    const bucket = this.#bucketOf(user, now);
    if (!bucket || !take(bucket, now, this.#perUserPerMinute, 60_000)) {
      if (bucket) bucket.suppressed++;
      return null;
    }
    if (!take(this.#global, now, this.#globalPerSecond, 1000)) {
      bucket.tokens += 1; // not this user's fault
      bucket.suppressed++;
      return null;
    }
    return bucket;
  }

  #bucketOf(user: string, now: number): Bucket | null {
    let bucket = this.#buckets.get(user);
    if (bucket) return bucket;
    if (this.#buckets.size >= MAX_TRACKED_USERS) {
      // Forget users whose bucket has refilled: they lose nothing by being forgotten.
      const full = 60_000; // a bucket refills completely within a minute
      for (const [u, b] of this.#buckets) {
        if (now - b.at >= full && b.suppressed === 0) this.#buckets.delete(u);
      }
      if (this.#buckets.size >= MAX_TRACKED_USERS) return null;
    }
    bucket = { tokens: this.#perUserPerMinute, at: now, suppressed: 0 };
    this.#buckets.set(user, bucket);
    return bucket;
  }
}

/** Token bucket: `capacity` tokens, refilled evenly over `periodMs`. */
function take(bucket: Bucket, now: number, capacity: number, periodMs: number): boolean {
  const elapsed = now - bucket.at;
  if (elapsed > 0) {
    bucket.tokens = Math.min(capacity, bucket.tokens + (elapsed * capacity) / periodMs);
    bucket.at = now;
  }
  if (bucket.tokens < 1) return false;
  bucket.tokens -= 1;
  return true;
}

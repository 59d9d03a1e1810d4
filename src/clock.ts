/**
 * The receive clock. (feed_id, created_at) identifies a reading, and a reading without
 * a device timestamp is stamped with its receive time; a backlog can arrive in one burst
 * within one microsecond, so the receive clock is strictly increasing: no two messages
 * received by one process share a stamp, and re-processing a message (a retried batch,
 * a replay of its capture) stamps it exactly as before, which keeps that idempotent.
 */

let lastUs = 0;

/**
 * Wall-clock time in whole microseconds since the Unix epoch, strictly increasing within
 * the process. Date.now() keeps it on the wall clock over weeks of uptime (a monotonic
 * clock drifts from it); performance.now() supplies the sub-millisecond part. At more
 * than a million messages a second it runs ahead of the wall clock, then waits for it.
 *
 * @example
 * ```ts
 * const a = nowUs(), b = nowUs(); // b > a
 * ```
 */
export function nowUs(): number {
  const us = Date.now() * 1000 + Math.floor((performance.now() % 1) * 1000);
  lastUs = us > lastUs ? us : lastUs + 1;
  return lastUs;
}

/**
 * Makes a sequence of receive times strictly increasing, in order: for sources whose
 * times may repeat (a capture written with millisecond precision). Deterministic, so
 * the same file stamps the same way every time.
 */
export class MonotonicStamper {
  #last = 0;
  stamp(us: number): number {
    this.#last = us > this.#last ? us : this.#last + 1;
    return this.#last;
  }
}

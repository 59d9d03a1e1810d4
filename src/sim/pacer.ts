/**
 * Pacing for `simulate --rate`: a token bucket filled at `rate` tokens a second. The
 * sender takes every whole token that is due each time it wakes, so the average rate
 * does not depend on how often timers fire (they fire late under load, and never more
 * often than every millisecond or so). The bucket holds at most `burstSeconds` of
 * tokens: a short stall (GC, a slow broker) is made up for, a long one is not, so a
 * stalled sender does not flood the broker when it wakes.
 */

/** A token bucket. */
export interface Pacer {
  /** Takes up to `max` due tokens at time `nowMs`; returns how many were taken. */
  take(nowMs: number, max: number): number;
  /** Milliseconds from `nowMs` until the next token is due. */
  waitMs(nowMs: number): number;
}

/**
 * Creates a pacer for `rate` messages a second; 0 means no limit.
 *
 * @example
 * ```ts
 * const pacer = createPacer({ rate: 200, startMs: 0 });
 * pacer.take(1000, Infinity); // 200 (one second's worth, the first one at once)
 * ```
 */
export function createPacer(opts: { rate: number; startMs: number; burstSeconds?: number }): Pacer {
  const { rate } = opts;
  if (rate <= 0) return { take: (_now, max) => max, waitMs: () => 0 };
  const capacity = Math.max(1, rate * (opts.burstSeconds ?? 1));
  let tokens = 1; // the first message goes at once
  let last = opts.startMs;
  const refill = (now: number) => {
    if (now > last) {
      tokens = Math.min(capacity, tokens + ((now - last) * rate) / 1000);
      last = now;
    }
  };
  return {
    take(now, max) {
      refill(now);
      const n = Math.min(max, Math.floor(tokens));
      tokens -= n;
      return n;
    },
    waitMs(now) {
      refill(now);
      return tokens >= 1 ? 0 : ((1 - tokens) * 1000) / rate;
    },
  };
}

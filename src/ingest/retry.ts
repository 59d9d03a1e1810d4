/**
 * Retrying with exponential backoff, shared by the pipeline (a batch is retried until it
 * commits, docs/delivery.md) and replay (a batch is retried a few times, then replay
 * stops with one line: it is idempotent, so running it again is the remedy).
 */
import { type Clock, sleepOn, systemClock } from "./timers.ts";

/** How to retry. */
export interface RetryOptions {
  /** The wait after the first failure; each further wait doubles, up to `maxDelayMs`. */
  firstDelayMs: number;
  maxDelayMs: number;
  /** Attempts at most, the first included; the last failure is thrown (default: no limit). */
  attempts?: number;
  /** True when retrying is no longer wanted: checked after a failure and after each wait. */
  givenUp?: () => boolean;
  /** Told of each failure about to be retried, before the wait. */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  /** Waits `ms` (default: on the system clock). */
  sleep?: (ms: number) => Promise<void>;
  clock?: Clock;
}

/**
 * Runs `work` until it resolves, waiting `firstDelayMs`, then twice that, ... (at most
 * `maxDelayMs`) between attempts. Throws the last error when the attempts run out or
 * `givenUp()` says so.
 */
export async function retryWithBackoff<T>(
  work: (attempt: number) => Promise<T>,
  opts: RetryOptions,
): Promise<T> {
  const attempts = opts.attempts ?? Infinity;
  const sleep = opts.sleep ?? ((ms: number) => sleepOn(opts.clock ?? systemClock, ms));
  let delay = opts.firstDelayMs;
  for (let attempt = 1;; attempt++) {
    try {
      return await work(attempt);
    } catch (error) {
      if (attempt >= attempts || opts.givenUp?.()) throw error;
      opts.onRetry?.(error, attempt, delay);
      await sleep(delay);
      if (opts.givenUp?.()) throw error;
      delay = Math.min(delay * 2, opts.maxDelayMs);
    }
  }
}

/**
 * The time the pipeline runs on: a monotonic `now` in milliseconds and one-shot timers.
 * Injected (PipelineOptions.clock), so the flush policy and the retries are tested on a
 * clock the test moves (`ManualClock`) and never wait on the real one
 * (src/ingest/pipeline_test.ts). Receive stamps are another clock: src/clock.ts.
 */

/** A timer's handle, as `setTimer` returns it. */
export type TimerHandle = unknown;

/** Now and timers. */
export interface Clock {
  /** Milliseconds on a monotonic scale (`performance.now()`). */
  now(): number;
  /** Calls `fn` once, `ms` from now. */
  setTimer(fn: () => void, ms: number): TimerHandle;
  clearTimer(handle: TimerHandle): void;
}

/** The process's own clock. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer: (fn, ms) => setTimeout(fn, ms),
  clearTimer: (handle) => clearTimeout(handle as number),
};

/** Resolves `ms` from now on `clock`. */
export function sleepOn(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimer(resolve, ms));
}

/**
 * A clock that moves only when told (`advance`): for tests of timing logic. Timers due
 * within a step run in time order, each followed by the promise jobs it started, so
 * what a timer sets in motion (a batch written, its acks) is done before the next one.
 */
export class ManualClock implements Clock {
  #now: number;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #nextId = 1;

  constructor(startMs = 1_000) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  setTimer(fn: () => void, ms: number): TimerHandle {
    const id = this.#nextId++;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn });
    return id;
  }

  clearTimer(handle: TimerHandle): void {
    this.#timers.delete(handle as number);
  }

  /** Timers not yet run. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves the clock `ms` forward, running every timer due on the way. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    await settle();
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | null = null;
      for (const entry of this.#timers) {
        if (entry[1].at <= end && (!next || entry[1].at < next[1].at)) next = entry;
      }
      if (!next) break;
      this.#timers.delete(next[0]);
      this.#now = Math.max(this.#now, next[1].at);
      next[1].fn();
      await settle();
    }
    this.#now = end;
    await settle();
  }
}

/**
 * Lets the promise jobs already started run to their end (a chain of awaits resolved
 * without timers or I/O takes one turn per await).
 */
export async function settle(turns = 100): Promise<void> {
  for (let i = 0; i < turns; i++) await Promise.resolve();
}

/**
 * Which way the processor writes a batch's readings (docs/performance.md, "PostgreSQL's
 * work per row").
 *
 * The fast way is one statement: a plain insert of every reading and the last-value
 * update, with no savepoint and no `on conflict`. `on conflict do nothing` makes
 * PostgreSQL insert each row speculatively (an index probe and one more WAL record per
 * row), and the savepoint around the insert costs two more round trips per batch; both
 * only pay off when a row is refused or already stored, which is rare in live traffic.
 * When the fast way fails for any reason but the database or the connection, the batch
 * is rolled back and written again the careful way (savepoints, `on conflict do nothing`,
 * isolation of refused rows), and the careful way is kept for a while: a replay or a
 * redelivery after a crash brings duplicates batch after batch, and each would otherwise
 * pay for a failed statement first.
 */

/** How long the careful way is kept after the fast way failed. */
export const DEFAULT_CAREFUL_MS = 10_000;

/** Chooses the fast or the careful way for each batch; one per writer. */
export class FastOrCareful {
  readonly #carefulMs: number;
  #carefulUntil = -Infinity;
  /** Batches written the fast way, and fast attempts that had to be redone carefully. */
  fast = 0;
  fallbacks = 0;

  readonly #onFallback: () => void;

  /** `onFallback` is told of each fast attempt redone carefully (serve counts them). */
  constructor(carefulMs = DEFAULT_CAREFUL_MS, onFallback: () => void = () => {}) {
    this.#carefulMs = carefulMs;
    this.#onFallback = onFallback;
  }

  /** Whether the next batch may try the fast way. */
  fastAllowed(now = performance.now()): boolean {
    return now >= this.#carefulUntil;
  }

  /** The fast way committed a batch. */
  fastSucceeded(): void {
    this.fast++;
  }

  /** The fast way failed: write carefully for the next `carefulMs`. */
  fastFailed(now = performance.now()): void {
    this.fallbacks++;
    this.#carefulUntil = now + this.#carefulMs;
    this.#onFallback();
  }
}

/**
 * When a lookup cache's entries expire (src/ingest/lookup_cache.ts, src/ingest/
 * compact_cache.ts): by generation, not per entry. Entries are set into the young
 * generation, which becomes the old one every `ttlMs / 2` (on a fixed grid of time), when
 * the old one is dropped. An entry is therefore trusted for at most `ttlMs` (and at least
 * half of it), with no expiry time of its own.
 *
 * `confirm(at)` says that the database had changed nothing the cache holds as of `at`
 * (src/ingest/cache_confirm.ts reads a change counter, sql/017): while confirmations keep
 * coming, the generations stop turning and nothing expires, so a fleet that publishes less
 * often than the TTL is not looked up again and again. When they stop, everything goes
 * within one TTL of the last one.
 */

/**
 * What a cache does with its generations at a moment: nothing, keep both (confirmed),
 * turn over (the young becomes the old, the old is dropped), or drop both.
 */
export type Turn = "none" | "keep" | "shift" | "drop";

/** The clock of a cache's generations. */
export class Generations {
  #epoch = -Infinity;
  /** The epoch of the latest `confirm`. */
  #confirmedEpoch = -Infinity;
  /** A turn was skipped since the last one made: the generations may hold entries of any age. */
  #kept = false;

  constructor(readonly ttlMs: number) {}

  /**
   * The turn due at `now`. Generations follow a fixed grid of half-TTL epochs: an entry
   * set during epoch e is dropped when epoch e + 2 begins, at most one TTL after it was set.
   */
  turn(now: number): Turn {
    const epoch = Math.floor(now / (this.ttlMs / 2));
    const passed = epoch - this.#epoch;
    if (passed <= 0) return "none";
    this.#epoch = epoch;
    if (epoch - this.#confirmedEpoch <= 1) {
      // Confirmed during this epoch or the one before: every entry held was current at
      // most one TTL ago (set since, or present at the confirmation). Nothing turns over.
      this.#kept = true;
      return "keep";
    }
    if (this.#kept) {
      // Confirmations stopped; the generations hold entries of any age, trusted only
      // through them: all go.
      this.#kept = false;
      return "drop";
    }
    return passed === 1 ? "shift" : "drop";
  }

  /**
   * Everything held now was still current at `at` (the time a check that found nothing
   * changed was sent, src/ingest/cache_confirm.ts), and so is what is set after it.
   */
  confirm(at: number): void {
    this.#confirmedEpoch = Math.max(this.#confirmedEpoch, Math.floor(at / (this.ttlMs / 2)));
  }
}

/** What the change counter's reader (src/ingest/cache_confirm.ts) does to a cache. */
export interface ConfirmedCache {
  /** Lookups in flight now are not cached: their answers may predate the counter read. */
  fence(): void;
  /** Nothing the cache holds had changed as of `at`. */
  confirm(at: number): void;
  /** Something changed: everything goes. */
  clear(): void;
}

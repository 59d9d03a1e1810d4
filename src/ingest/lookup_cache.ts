/**
 * A size-bounded TTL cache of what the processor looked up in the database: feeds
 * (`FeedCache`, src/ingest/feed_cache.ts) and registered devices (`DeviceCache`,
 * src/ingest/device_cache.ts). Only what was found is cached (an unknown feed or device
 * may be registered any moment); entries expire after `ttlMs` so changes take effect, and
 * `clear()` drops everything when the database says something changed.
 *
 * Expiry is by generation, not per entry: entries go into a young map, which becomes the
 * old map every `ttlMs / 2` (on a fixed grid of time), when the old one is dropped. An
 * entry is therefore trusted for at most `ttlMs` (and at least half of it), and costs one
 * map slot, with no wrapper object or expiry time of its own: about 100 bytes less per
 * entry, which is what lets a million feeds fit (docs/performance.md, "Fleet scale").
 *
 * `confirm(at)` says that the database had changed nothing the cache holds as of `at`
 * (src/ingest/cache_confirm.ts reads a change counter, sql/017): while confirmations keep
 * coming, the generations stop turning and nothing expires, so a fleet that publishes less
 * often than the TTL is not looked up again and again. When they stop, everything goes
 * within one TTL of the last one.
 */
export class LookupCache<V> {
  #young = new Map<string, V>();
  #old = new Map<string, V>();
  #epoch = -Infinity;
  #version = 0;
  /** The epoch of the latest `confirm`. */
  #confirmedEpoch = -Infinity;
  /** A turn was skipped since the last one made: the maps may hold entries of any age. */
  #kept = false;
  #misses = 0;
  /** Where eviction goes on from (`#evictOldest`). */
  #evicting: { map: Map<string, V>; keys: MapIterator<string> } | null = null;
  readonly ttlMs: number;
  readonly maxEntries: number;

  constructor(opts: { ttlMs?: number; maxEntries?: number } = {}) {
    this.ttlMs = opts.ttlMs ?? 30_000;
    this.maxEntries = opts.maxEntries ?? DEFAULT_FEED_CACHE_SIZE;
  }

  // Generations follow a fixed grid of half-TTL epochs: an entry set during epoch e is
  // dropped when epoch e + 2 begins, at most one TTL after it was set.
  #rotate(now: number): void {
    const epoch = Math.floor(now / (this.ttlMs / 2));
    const passed = epoch - this.#epoch;
    if (passed <= 0) return;
    if (epoch - this.#confirmedEpoch <= 1) {
      // Confirmed during this epoch or the one before: every entry held was current at
      // most one TTL ago (set since, or present at the confirmation). Nothing turns over.
      this.#epoch = epoch;
      this.#kept = true;
      return;
    }
    if (this.#kept) {
      // Confirmations stopped; the maps hold entries of any age, trusted only through
      // them: all go.
      this.#kept = false;
      this.#old = new Map();
    } else if (passed === 1) {
      this.#old = this.#young;
    } else {
      this.#old = new Map();
    }
    this.#young = new Map();
    this.#evicting = null; // holds the map it walks: not a dropped one
    this.#epoch = epoch;
  }

  get(key: string, now = Date.now()): V | undefined {
    // No cache (TTL 0): no generations to turn over, on every reading of every batch.
    if (this.ttlMs <= 0) {
      this.#misses++;
      return undefined;
    }
    this.#rotate(now);
    const held = this.#young.get(key) ?? this.#old.get(key);
    if (held === undefined) this.#misses++;
    return held;
  }

  /** `get`s that found nothing: the entries looked up in the database since the start. */
  get misses(): number {
    return this.#misses;
  }

  /**
   * Bumped by every `delete` and `clear`. A reader notes it before querying the database
   * and passes it to `set`: if an invalidation arrived while the query ran, the answer may
   * predate the change and is not cached.
   */
  get version(): number {
    return this.#version;
  }

  set(key: string, value: V, now = Date.now(), seenVersion?: number): void {
    if (this.ttlMs <= 0) return;
    if (seenVersion !== undefined && seenVersion !== this.#version) return;
    this.#rotate(now);
    this.#old.delete(key);
    if (!this.#young.has(key) && this.size >= this.maxEntries) this.#evictOldest();
    this.#young.set(key, value);
  }

  /**
   * Deletes the oldest entry: maps iterate in insertion order, so the first key of the old
   * map (or of the young one when the old is empty). One iterator per map walks on from the
   * last eviction: a fresh `keys().next()` each time would skip every entry deleted before
   * it, which made a full cache quadratic once confirmations stopped the generations from
   * turning over (1M feeds through 200,000 entries: 18 % of the 5k rate, against 48 %).
   */
  #evictOldest(): void {
    const from = this.#old.size > 0 ? this.#old : this.#young;
    if (this.#evicting?.map !== from) this.#evicting = { map: from, keys: from.keys() };
    let next = this.#evicting.keys.next();
    if (next.done) {
      // Exhausted: keys set after it ran out are not visited by it.
      this.#evicting.keys = from.keys();
      next = this.#evicting.keys.next();
    }
    if (!next.done) from.delete(next.value);
  }

  /**
   * Everything held now was still current at `at` (the time a check that found nothing
   * changed was sent, src/ingest/cache_confirm.ts), and so is what is set after it.
   */
  confirm(at: number): void {
    if (this.ttlMs <= 0) return;
    this.#confirmedEpoch = Math.max(this.#confirmedEpoch, Math.floor(at / (this.ttlMs / 2)));
  }

  /**
   * Lookups in flight now are not cached (their `set` saw an older version): their
   * answers may predate a change counter just read (src/ingest/cache_confirm.ts).
   */
  fence(): void {
    this.#version++;
  }

  delete(key: string): void {
    this.#version++;
    this.#young.delete(key);
    this.#old.delete(key);
  }

  clear(): void {
    this.#version++;
    this.#evicting = null;
    this.#young = new Map();
    this.#old = new Map();
  }

  get size(): number {
    return this.#young.size + this.#old.size;
  }
}

/** Entries a feed (or device) cache holds at most, unless `--feed-cache-size` says. */
export const DEFAULT_FEED_CACHE_SIZE = 200_000;

/**
 * Feed lookup cache: (user_id, feed_key) → the feed's id, state and thresholds. Only
 * found feeds are cached (an unknown feed may be registered any moment); entries expire
 * after `ttlMs` so deactivations and threshold changes take effect, and `clear()` drops
 * everything when the database says a feed changed.
 */

/** What the processor needs to know about a feed. */
export interface FeedInfo {
  id: number;
  isActive: boolean;
  thresholdMin: number | null;
  thresholdMax: number | null;
}

/** Cache key of a feed. */
export function feedKeyOf(userId: string, feedKey: string): string {
  return `${userId}\u0000${feedKey}`;
}

/**
 * A size-bounded TTL cache of feeds (or, as `FeedCache<number>`, of registered devices:
 * key `feedKeyOf(user_id, device_code)`, value the device id).
 */
export class FeedCache<V = FeedInfo> {
  #entries = new Map<string, { feed: V; expiresAt: number }>();
  #version = 0;
  readonly ttlMs: number;
  readonly maxEntries: number;

  constructor(opts: { ttlMs?: number; maxEntries?: number } = {}) {
    this.ttlMs = opts.ttlMs ?? 30_000;
    this.maxEntries = opts.maxEntries ?? 200_000;
  }

  get(key: string, now = Date.now()): V | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= now) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.feed;
  }

  /**
   * Bumped by every `delete` and `clear`. A reader notes it before querying the database
   * and passes it to `set`: if an invalidation arrived while the query ran, the answer may
   * predate the change and is not cached.
   */
  get version(): number {
    return this.#version;
  }

  set(key: string, feed: V, now = Date.now(), seenVersion?: number): void {
    if (this.ttlMs <= 0) return;
    if (seenVersion !== undefined && seenVersion !== this.#version) return;
    // Map iterates in insertion order, so the first key is the oldest entry.
    if (this.#entries.size >= this.maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    this.#entries.set(key, { feed, expiresAt: now + this.ttlMs });
  }

  delete(key: string): void {
    this.#version++;
    this.#entries.delete(key);
  }

  clear(): void {
    this.#version++;
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}

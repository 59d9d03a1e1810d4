import { type ConfirmedCache, Generations } from "./cache_generations.ts";

/**
 * A size-bounded TTL cache in V8 maps: what the processor looked up in the database and
 * holds as objects, such as tenant aliases (src/ingest/tenant_cache.ts) and Sparkplug
 * births. Feeds and devices, held by the million, live off the V8 heap instead
 * (src/ingest/compact_cache.ts). Only what was found is cached (an unknown key may be
 * registered any moment); entries expire by generation (src/ingest/cache_generations.ts),
 * and `clear()` drops everything when the database says something changed.
 *
 * A generation is a map: entries go into the young map, which becomes the old map when the
 * generations turn, and the old one is dropped. An entry costs one map slot, with no
 * wrapper object or expiry time of its own.
 */
export class LookupCache<V> implements ConfirmedCache {
  #young = new Map<string, V>();
  #old = new Map<string, V>();
  #generations: Generations;
  #version = 0;
  #misses = 0;
  /** Where eviction goes on from (`#evictOldest`). */
  #evicting: { map: Map<string, V>; keys: MapIterator<string> } | null = null;
  readonly ttlMs: number;
  readonly maxEntries: number;

  constructor(opts: { ttlMs?: number; maxEntries?: number } = {}) {
    this.ttlMs = opts.ttlMs ?? 30_000;
    this.maxEntries = opts.maxEntries ?? DEFAULT_MAP_CACHE_SIZE;
    this.#generations = new Generations(this.ttlMs);
  }

  #rotate(now: number): void {
    const turn = this.#generations.turn(now);
    if (turn === "none" || turn === "keep") return;
    this.#old = turn === "shift" ? this.#young : new Map();
    this.#young = new Map();
    this.#evicting = null; // holds the map it walks: not a dropped one
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

  /** See `Generations.confirm`. */
  confirm(at: number): void {
    if (this.ttlMs <= 0) return;
    this.#generations.confirm(at);
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

/** Entries a map cache holds unless told (its owners size it: src/ingest/cache_sizes.ts). */
const DEFAULT_MAP_CACHE_SIZE = 10_000;

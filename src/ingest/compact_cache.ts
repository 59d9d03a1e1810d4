/**
 * A lookup cache off the V8 heap, for what is held by the million: feeds and devices
 * (src/ingest/feed_cache.ts, src/ingest/device_cache.ts; docs/performance.md, "The
 * compact lookup cache"). A V8 map entry of a feed took 93–130 bytes of heap, so the
 * default memory budget held 200,000 feeds; a slot here takes 18 bytes in one typed array
 * allocated at start, so the same budget holds over a million, and the bound is exact by
 * construction: slots × 18 bytes, whatever the keys look like.
 *
 * A slot holds no key, only a 96-bit tag of it from a keyed hash (src/ingest/keyed_hash.ts,
 * a secret per process), a 32-bit value (a feed's or device's id) and a 16-bit stamp. Two
 * keys are taken for one when their tags are equal: with a keyed 128-bit hash that is a
 * chance of 2^-96 per comparison, and a publisher who does not know the process's secret
 * cannot aim at another tenant's feed.
 *
 * Slots come in buckets of 8 (one bucket: 144 bytes, three cache lines); a key may live in
 * either of two buckets its hash picks, the first with room, so a table fills to over 90 %
 * before it must evict (the oldest entry of the two buckets).
 *
 * Expiry is by generation (src/ingest/cache_generations.ts): a stamp says which generation
 * set a slot; turning the generations over moves the stamp on, and slots stamped before
 * `#liveFrom` are dead (and free). A clear is one stamp step, not a pass over the table.
 */
import { type ConfirmedCache, Generations } from "./cache_generations.ts";
import { KeyedHash } from "./keyed_hash.ts";

const SLOTS = 8;
const TAG_WORDS = 3;
/** A bucket in 32-bit words: 8 tags of 3 words, 8 values, then 8 16-bit stamps. */
const BUCKET_WORDS = SLOTS * TAG_WORDS + SLOTS + SLOTS / 2;
const VALUES_AT = SLOTS * TAG_WORDS;
const STAMPS_AT_16 = (VALUES_AT + SLOTS) * 2;
/** The bytes of one slot: tag, value and stamp. */
export const COMPACT_SLOT_BYTES = (BUCKET_WORDS * 4) / SLOTS;
/**
 * A slot's 16-bit stamp: 13 bits count generations, one says the key is in the second of
 * its buckets, and the two high bits are the owner's flags.
 */
const STAMP_BITS = 13;
const STAMP_MAX = (1 << STAMP_BITS) - 1;
const IN_SECOND = 1 << STAMP_BITS;
const FLAGS_SHIFT = STAMP_BITS + 1;
/** The flags a slot holds beside its value: 0–3. */
export const FLAG_LIMIT = 4;
/** The largest value a slot holds; an id beyond it is not cached (looked up every time). */
export const MAX_COMPACT_VALUE = 0xffff_ffff;

/**
 * Entries a compact cache holds unless told: the feed cache's default, a fleet of a million
 * feeds with room to spare (a table fills its slots to about 95 % before it evicts).
 */
export const DEFAULT_FEED_CACHE_SIZE = 1_100_000;

/** Slots of a cache of `maxEntries`: whole buckets, at least two. */
export function compactSlotsOf(maxEntries: number): number {
  return Math.max(2, Math.ceil(maxEntries / SLOTS)) * SLOTS;
}

/**
 * The table and its generations. Subclasses give the values their meaning: `findLive`,
 * `valueAt`, `flagsAt` read, `store` writes.
 */
export class CompactCache implements ConfirmedCache {
  readonly ttlMs: number;
  /** Slots: the most entries held (`maxEntries` asked for, rounded up to whole buckets). */
  readonly maxEntries: number;
  readonly #buckets: number;
  readonly #words: Uint32Array;
  readonly #halves: Uint16Array;
  readonly #hash: KeyedHash;
  /** The key being looked at: its 128-bit hash, and the two buckets it picks. */
  readonly #h = new Uint32Array(4);
  #first = 0;
  #second = 0;
  readonly #generations: Generations;
  #stamp = 1;
  #liveFrom = 1;
  /** Live slots stamped `#stamp`, and stamped before it (but not before `#liveFrom`). */
  #young = 0;
  #old = 0;
  #version = 0;
  #misses = 0;
  /** Where the search for an eviction victim starts, so ties do not always hit one slot. */
  #victimCursor = 0;

  constructor(opts: { ttlMs?: number; maxEntries?: number; hash?: KeyedHash } = {}) {
    this.ttlMs = opts.ttlMs ?? 30_000;
    const slots = this.ttlMs > 0 ? compactSlotsOf(opts.maxEntries ?? DEFAULT_FEED_CACHE_SIZE) : 0;
    this.maxEntries = slots;
    this.#buckets = slots / SLOTS;
    const bytes = new ArrayBuffer(this.#buckets * BUCKET_WORDS * 4);
    this.#words = new Uint32Array(bytes);
    this.#halves = new Uint16Array(bytes);
    this.#hash = opts.hash ?? new KeyedHash();
    this.#generations = new Generations(this.ttlMs);
  }

  /** Live entries. */
  get size(): number {
    return this.#young + this.#old;
  }

  /** Lookups that found nothing: the entries looked up in the database since the start. */
  get misses(): number {
    return this.#misses;
  }

  /**
   * Bumped by every `delete` and `clear` (and `fence`). A reader notes it before querying
   * the database and passes it to `set`: if an invalidation arrived while the query ran,
   * the answer may predate the change and is not cached.
   */
  get version(): number {
    return this.#version;
  }

  /** The slot holding `key`, alive; -1 (a miss, counted) when there is none. */
  protected findLive(key: string, now: number): number {
    if (this.ttlMs <= 0) {
      this.#misses++;
      return -1;
    }
    this.#rotate(now);
    this.#hashKey(key);
    let slot = this.#match(this.#first);
    if (slot < 0) slot = this.#match(this.#second);
    if (slot >= 0 && this.#stampOf(slot) >= this.#liveFrom) return slot;
    this.#misses++;
    return -1;
  }

  /** A lookup that found an entry unfit to answer (its owner's reasons) is a miss too. */
  protected countMiss(): void {
    this.#misses++;
  }

  protected valueAt(slot: number): number {
    return this.#words[this.#wordsOf(slot) + VALUES_AT + (slot % SLOTS)];
  }

  protected flagsAt(slot: number): number {
    return this.#halves[this.#halfOf(slot)] >>> FLAGS_SHIFT;
  }

  /** A `set` with `seenVersion` is kept (see `version`). */
  protected admits(seenVersion: number | undefined): boolean {
    return this.ttlMs > 0 && (seenVersion === undefined || seenVersion === this.#version);
  }

  /**
   * Holds `value` (an integer 0 … MAX_COMPACT_VALUE) with `flags` (0 … 3) for `key`. A value
   * that does not fit is not held, and the key's entry goes (it may say something older).
   */
  protected store(
    key: string,
    value: number,
    flags: number,
    now: number,
    seenVersion?: number,
  ): void {
    if (!this.admits(seenVersion)) return;
    this.#rotate(now);
    this.#hashKey(key);
    if (!(Number.isInteger(value) && value >= 0 && value <= MAX_COMPACT_VALUE)) {
      this.#remove();
      return;
    }
    let slot = this.#match(this.#first);
    if (slot < 0) slot = this.#match(this.#second);
    if (slot < 0) slot = this.#freeSlot();
    this.#forget(slot);
    const w = this.#wordsOf(slot);
    const t = w + (slot % SLOTS) * TAG_WORDS;
    this.#words[t] = this.#h[1];
    this.#words[t + 1] = this.#h[2];
    this.#words[t + 2] = this.#h[3];
    this.#words[w + VALUES_AT + (slot % SLOTS)] = value;
    const second = Math.floor(slot / SLOTS) === this.#second ? IN_SECOND : 0;
    this.#halves[this.#halfOf(slot)] = (flags << FLAGS_SHIFT) | second | this.#stamp;
    this.#young++;
  }

  delete(key: string): void {
    this.#version++;
    if (this.ttlMs <= 0) return;
    this.#hashKey(key);
    this.#remove();
  }

  clear(): void {
    this.#version++;
    if (this.ttlMs <= 0) return;
    this.#nextStamp();
    this.#liveFrom = this.#stamp;
    this.#young = 0;
    this.#old = 0;
  }

  /** See `Generations.confirm`. */
  confirm(at: number): void {
    if (this.ttlMs > 0) this.#generations.confirm(at);
  }

  /**
   * Lookups in flight now are not cached (their `set` saw an older version): their
   * answers may predate a change counter just read (src/ingest/cache_confirm.ts).
   */
  fence(): void {
    this.#version++;
  }

  #rotate(now: number): void {
    const turn = this.#generations.turn(now);
    if (turn === "none" || turn === "keep") return;
    const young = this.#young;
    if (this.#nextStamp()) return; // every slot emptied
    if (turn === "shift") {
      this.#liveFrom = this.#stamp - 1;
      this.#old = young;
    } else {
      this.#liveFrom = this.#stamp;
      this.#old = 0;
    }
    this.#young = 0;
  }

  /**
   * A new generation's stamp. When the 13 bits run out (8,191 turns: 34 hours of turning
   * at the default TTL, which confirmations stop), every slot is emptied and stamps start
   * again: a cache cleared once in days. True when that happened.
   */
  #nextStamp(): boolean {
    if (this.#stamp < STAMP_MAX) {
      this.#stamp++;
      return false;
    }
    for (let b = 0; b < this.#buckets; b++) {
      const h = b * BUCKET_WORDS * 2 + STAMPS_AT_16;
      this.#halves.fill(0, h, h + SLOTS);
    }
    this.#stamp = 2;
    this.#liveFrom = 2;
    this.#young = 0;
    this.#old = 0;
    return true;
  }

  #hashKey(key: string): void {
    const h = this.#h;
    this.#hash.hashPair(key, "", h, 0);
    const buckets = this.#buckets;
    this.#first = h[0] % buckets;
    this.#second = (this.#first + offsetOf(h[1], buckets)) % buckets;
  }

  /** The other bucket of the key in `slot` (from its tag: see `offsetOf`). */
  #otherBucketOf(slot: number): number {
    const bucket = Math.floor(slot / SLOTS);
    const offset = offsetOf(
      this.#words[this.#wordsOf(slot) + (slot % SLOTS) * TAG_WORDS],
      this.#buckets,
    );
    return this.#halves[this.#halfOf(slot)] & IN_SECOND
      ? (bucket - offset + this.#buckets) % this.#buckets
      : (bucket + offset) % this.#buckets;
  }

  /** The slot of `bucket` tagged as the key being looked at (alive or not), or -1. */
  #match(bucket: number): number {
    const words = this.#words;
    const w = bucket * BUCKET_WORDS;
    const h16 = w * 2 + STAMPS_AT_16;
    const t1 = this.#h[1], t2 = this.#h[2], t3 = this.#h[3];
    for (let i = 0; i < SLOTS; i++) {
      const t = w + i * TAG_WORDS;
      if (words[t] === t1 && words[t + 1] === t2 && words[t + 2] === t3) {
        if (this.#halves[h16 + i] !== 0) return bucket * SLOTS + i;
      }
    }
    return -1;
  }

  /**
   * Where a new key goes: a free slot of the emptier of its two buckets (two choices keep
   * the buckets even, so the table fills to ~95 % before it evicts), or when both are full
   * the oldest of their 16 entries.
   */
  #freeSlot(): number {
    const first = this.#freeIn(this.#first);
    const second = this.#freeIn(this.#second);
    if (first > 0 || second > 0) {
      return this.#firstFreeOf(second > first ? this.#second : this.#first);
    }
    // Both full: one of their keys moves to its other bucket if that has room (one cuckoo
    // step), else the oldest goes.
    for (let k = 0; k < 2 * SLOTS; k++) {
      const slot = (k < SLOTS ? this.#first : this.#second) * SLOTS + (k % SLOTS);
      const other = this.#otherBucketOf(slot);
      if (this.#freeIn(other) > 0) {
        this.#move(slot, this.#firstFreeOf(other));
        return slot;
      }
    }
    return this.#oldest();
  }

  #firstFreeOf(bucket: number): number {
    const h16 = bucket * BUCKET_WORDS * 2 + STAMPS_AT_16;
    for (let i = 0; i < SLOTS; i++) {
      if ((this.#halves[h16 + i] & STAMP_MAX) < this.#liveFrom) return bucket * SLOTS + i;
    }
    return -1;
  }

  /** Moves the live entry of `from` to the free slot `to` of its other bucket. */
  #move(from: number, to: number): void {
    const words = this.#words;
    const f = this.#wordsOf(from), t = this.#wordsOf(to);
    const ft = f + (from % SLOTS) * TAG_WORDS, tt = t + (to % SLOTS) * TAG_WORDS;
    words[tt] = words[ft];
    words[tt + 1] = words[ft + 1];
    words[tt + 2] = words[ft + 2];
    words[t + VALUES_AT + (to % SLOTS)] = words[f + VALUES_AT + (from % SLOTS)];
    this.#halves[this.#halfOf(to)] = this.#halves[this.#halfOf(from)] ^ IN_SECOND;
    this.#halves[this.#halfOf(from)] = 0;
  }

  /** How many slots of `bucket` hold nothing alive. */
  #freeIn(bucket: number): number {
    const h16 = bucket * BUCKET_WORDS * 2 + STAMPS_AT_16;
    let free = 0;
    for (let i = 0; i < SLOTS; i++) {
      if ((this.#halves[h16 + i] & STAMP_MAX) < this.#liveFrom) free++;
    }
    return free;
  }

  /** The oldest slot of the key's two buckets (both full of live entries). */
  #oldest(): number {
    let best = -1;
    let bestStamp = Infinity;
    const start = this.#victimCursor++ % (2 * SLOTS);
    for (let k = 0; k < 2 * SLOTS; k++) {
      const j = (start + k) % (2 * SLOTS);
      const slot = (j < SLOTS ? this.#first : this.#second) * SLOTS + (j % SLOTS);
      const stamp = this.#stampOf(slot);
      if (stamp < bestStamp) {
        best = slot;
        bestStamp = stamp;
      }
    }
    return best;
  }

  /** Removes the key being looked at. */
  #remove(): void {
    for (let k = 0; k < 2; k++) {
      const slot = this.#match(k === 0 ? this.#first : this.#second);
      if (slot < 0) continue;
      this.#forget(slot);
      this.#halves[this.#halfOf(slot)] = 0;
    }
  }

  /** Takes a slot about to be overwritten or emptied out of the live counts. */
  #forget(slot: number): void {
    const stamp = this.#stampOf(slot);
    if (stamp < this.#liveFrom) return;
    if (stamp === this.#stamp) this.#young--;
    else this.#old--;
  }

  #stampOf(slot: number): number {
    return this.#halves[this.#halfOf(slot)] & STAMP_MAX;
  }

  #wordsOf(slot: number): number {
    return Math.floor(slot / SLOTS) * BUCKET_WORDS;
  }

  #halfOf(slot: number): number {
    return Math.floor(slot / SLOTS) * BUCKET_WORDS * 2 + STAMPS_AT_16 + (slot % SLOTS);
  }
}

/**
 * How far a key's second bucket is from its first: from the tag, so that a key's other
 * bucket is known from the one it is in (and which of the two that is), never 0.
 */
function offsetOf(tag: number, buckets: number): number {
  return 1 + (tag % (buckets - 1));
}

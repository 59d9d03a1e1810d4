/**
 * The thresholds and alert rules of cached feeds that have any, by feed id, in typed arrays
 * (37 bytes a slot): the compact feed cache (src/ingest/feed_cache.ts) holds a feed's id in
 * its slot, and a flag saying its rules are here. Most feeds have none; this table has one
 * slot for every eight of the feed cache's, and when a bucket is full a newer feed's rules
 * take an older one's slot: that feed's next lookup misses and puts them back.
 *
 * Nothing here expires: an entry is only ever read through a live feed cache slot, and
 * every `set` of that slot writes its rules first.
 */
import type { FeedInfo } from "./feed_info.ts";

const SLOTS = 8;
const NUMBERS = 4; // threshold min, max, hysteresis, min duration (µs)
/** The bytes of one slot: id, four numbers, flags. */
export const FEED_RULES_SLOT_BYTES = 4 + NUMBERS * 8 + 1;

const ACTIVE = 1;
const HAS_MIN = 2;
const HAS_MAX = 4;
const HAS_ALERTS = 8;
const ALERT_MODE = 16;
const WATCHES_SILENCE = 32;

/** Slots of the rules table beside a feed cache of `feedSlots` slots. */
export function feedRulesSlotsOf(feedSlots: number): number {
  return feedSlots === 0 ? 0 : Math.max(1, Math.ceil(feedSlots / 8 / SLOTS)) * SLOTS;
}

export class FeedRulesTable {
  readonly #buckets: number;
  readonly #ids: Uint32Array;
  readonly #numbers: Float64Array;
  readonly #flags: Uint8Array;
  #cursor = 0;

  constructor(slots: number) {
    this.#buckets = slots / SLOTS;
    this.#ids = new Uint32Array(slots);
    this.#numbers = new Float64Array(slots * NUMBERS);
    this.#flags = new Uint8Array(slots);
  }

  /** The rules held for feed `id` (ids start at 1: 0 marks an empty slot). */
  get(id: number): FeedInfo | undefined {
    if (this.#buckets === 0 || id === 0) return undefined;
    const slot = this.#slotIn(this.#bucketOf(id), id);
    if (slot < 0) return undefined;
    const flags = this.#flags[slot];
    const n = slot * NUMBERS;
    const nums = this.#numbers;
    const feed: FeedInfo = {
      id,
      isActive: (flags & ACTIVE) !== 0,
      thresholdMin: flags & HAS_MIN ? nums[n] : null,
      thresholdMax: flags & HAS_MAX ? nums[n + 1] : null,
    };
    if (flags & HAS_ALERTS) {
      feed.alerts = {
        alertMode: (flags & ALERT_MODE) !== 0,
        hysteresis: nums[n + 2],
        minDurationUs: nums[n + 3],
        watchesSilence: (flags & WATCHES_SILENCE) !== 0,
      };
    }
    return feed;
  }

  /** Holds `feed`'s rules (its id must fit 32 bits and not be 0). */
  set(feed: FeedInfo): void {
    if (this.#buckets === 0 || feed.id === 0) return;
    const bucket = this.#bucketOf(feed.id);
    let slot = this.#slotIn(bucket, feed.id);
    if (slot < 0) slot = this.#slotIn(bucket, 0);
    if (slot < 0) slot = bucket * SLOTS + (this.#cursor++ % SLOTS);
    const n = slot * NUMBERS;
    const nums = this.#numbers;
    let flags = feed.isActive ? ACTIVE : 0;
    if (feed.thresholdMin !== null) (flags |= HAS_MIN), (nums[n] = feed.thresholdMin);
    if (feed.thresholdMax !== null) (flags |= HAS_MAX), (nums[n + 1] = feed.thresholdMax);
    const alerts = feed.alerts;
    if (alerts) {
      flags |= HAS_ALERTS | (alerts.alertMode ? ALERT_MODE : 0) |
        (alerts.watchesSilence ? WATCHES_SILENCE : 0);
      nums[n + 2] = alerts.hysteresis;
      nums[n + 3] = alerts.minDurationUs;
    }
    this.#ids[slot] = feed.id;
    this.#flags[slot] = flags;
  }

  /** The slot of `bucket` holding `id` (0: a free one), or -1. */
  #slotIn(bucket: number, id: number): number {
    const start = bucket * SLOTS;
    for (let i = start; i < start + SLOTS; i++) if (this.#ids[i] === id) return i;
    return -1;
  }

  #bucketOf(id: number): number {
    return (Math.imul(id, 0x9e3779b1) >>> 0) % this.#buckets;
  }
}

/**
 * The feed cache: (user_id, feed_key) → the feed's id, state and thresholds, as the
 * processor's feed lookup found them (src/ingest/write/lookups.ts). Entries expire after
 * the TTL so deactivations and threshold changes take effect, and LISTEN/NOTIFY drops a
 * changed feed at once (src/ingest/feed_notify.ts).
 */
import { CompactCache, MAX_COMPACT_VALUE } from "./compact_cache.ts";
import { feedRulesSlotsOf, FeedRulesTable } from "./feed_rules_table.ts";
import type { FeedInfo } from "./feed_info.ts";
import type { KeyedHash } from "./keyed_hash.ts";

export type { FeedAlertRules, FeedInfo } from "./feed_info.ts";

/** Cache key of a feed. */
export function feedKeyOf(userId: string, feedKey: string): string {
  return `${userId}\u0000${feedKey}`;
}

/** How a feed cache slot's flags say what the feed is beyond its id. */
const PLAIN = 0;
const INACTIVE = 1;
const WITH_RULES = 2;

/**
 * The feeds already looked up, by `feedKeyOf(user_id, feed_key)`, off the V8 heap
 * (src/ingest/compact_cache.ts: 18 bytes a feed). Most feeds are active, without
 * thresholds or alert rules: such a feed is its id alone. An inactive one is its id and a
 * flag; one with thresholds or alert rules has them in a table of its own beside
 * (src/ingest/feed_rules_table.ts, a slot for every eight feeds). `get` gives back an
 * equal `FeedInfo`.
 */
export class FeedCache extends CompactCache {
  readonly #rules: FeedRulesTable;

  constructor(opts: { ttlMs?: number; maxEntries?: number; hash?: KeyedHash } = {}) {
    super(opts);
    this.#rules = new FeedRulesTable(feedRulesSlotsOf(this.maxEntries));
  }

  get(key: string, now = Date.now()): FeedInfo | undefined {
    const slot = this.findLive(key, now);
    if (slot < 0) return undefined;
    const id = this.valueAt(slot);
    const kind = this.flagsAt(slot);
    if (kind === PLAIN) return { id, isActive: true, thresholdMin: null, thresholdMax: null };
    if (kind === INACTIVE) return { id, isActive: false, thresholdMin: null, thresholdMax: null };
    const feed = this.#rules.get(id);
    // Its rules gave their slot to another feed's: looked up again, like any miss.
    if (feed === undefined) this.countMiss();
    return feed;
  }

  /** Holds `feed` (a number: an active feed's id, without thresholds or rules). */
  set(key: string, feed: FeedInfo | number, now = Date.now(), seenVersion?: number): void {
    if (!this.admits(seenVersion)) return;
    if (typeof feed === "number") return this.store(key, feed, PLAIN, now, seenVersion);
    const kind = kindOf(feed);
    if (kind === WITH_RULES && feed.id <= MAX_COMPACT_VALUE) this.#rules.set(feed);
    this.store(key, feed.id, kind, now, seenVersion);
  }
}

function kindOf(feed: FeedInfo): number {
  if (feed.thresholdMin !== null || feed.thresholdMax !== null || feed.alerts !== undefined) {
    return WITH_RULES;
  }
  return feed.isActive ? PLAIN : INACTIVE;
}

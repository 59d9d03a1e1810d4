/**
 * The feed cache: (user_id, feed_key) → the feed's id, state and thresholds, as the
 * processor's feed lookup found them (src/ingest/write/lookups.ts). Entries expire after
 * the TTL so deactivations and threshold changes take effect, and LISTEN/NOTIFY drops a
 * changed feed at once (src/ingest/feed_notify.ts).
 */
import { LookupCache } from "./lookup_cache.ts";

export { DEFAULT_FEED_CACHE_SIZE } from "./lookup_cache.ts";

/** What the processor needs to know about a feed. */
export interface FeedInfo {
  id: number;
  isActive: boolean;
  thresholdMin: number | null;
  thresholdMax: number | null;
  /** Present only for a feed with alert rules (sql/010): most feeds carry nothing more. */
  alerts?: FeedAlertRules;
}

/**
 * A feed's alert settings (docs/operations.md, "Alerts"): its threshold mode `alert` and
 * what goes with it, or a `max_silence` (a stale alert its next reading closes).
 */
export interface FeedAlertRules {
  /** `threshold_mode = 'alert'`: a reading out of range is stored and opens an alert. */
  alertMode: boolean;
  /** `threshold_hysteresis`: the band to re-enter before an alert closes (0: none). */
  hysteresis: number;
  /** `threshold_min_duration` in µs: how long the value stays out before it opens (0: at once). */
  minDurationUs: number;
  /** `max_silence` is set: the silence check may have opened a stale alert. */
  watchesSilence: boolean;
}

/** Cache key of a feed. */
export function feedKeyOf(userId: string, feedKey: string): string {
  return `${userId}\u0000${feedKey}`;
}

/**
 * The feeds already looked up, by `feedKeyOf(user_id, feed_key)`. Most feeds are active,
 * without thresholds or alert rules: such a feed is held as its id alone (a small integer
 * V8 keeps in the map's slot), not as an object, ~56 of the ~150 bytes an entry took, so
 * the same memory holds half as many feeds again (docs/performance.md, "Fleet scale
 * (issue 26)"). `get` gives back an equal `FeedInfo`.
 */
export class FeedCache extends LookupCache<FeedInfo | number> {
  override get(key: string, now = Date.now()): FeedInfo | undefined {
    const held = super.get(key, now);
    return typeof held === "number" ? plainFeed(held) : held;
  }

  override set(key: string, value: FeedInfo | number, now = Date.now(), seenVersion?: number) {
    super.set(
      key,
      typeof value === "number" || !isPlain(value) ? value : value.id,
      now,
      seenVersion,
    );
  }
}

/** An active feed without thresholds or alert rules: all there is to it is its id. */
function isPlain(feed: FeedInfo): boolean {
  return feed.isActive && feed.thresholdMin === null && feed.thresholdMax === null &&
    feed.alerts === undefined;
}

function plainFeed(id: number): FeedInfo {
  return { id, isActive: true, thresholdMin: null, thresholdMax: null };
}

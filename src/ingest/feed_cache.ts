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
}

/** Cache key of a feed. */
export function feedKeyOf(userId: string, feedKey: string): string {
  return `${userId}\u0000${feedKey}`;
}

/** The feeds already looked up, by `feedKeyOf(user_id, feed_key)`. */
export class FeedCache extends LookupCache<FeedInfo> {}

/**
 * How big each lookup cache is, from `--feed-cache-size`, and what that costs: the memory
 * budget (src/ingest/memory_budget.ts) counts it, and the caches are built from it
 * (docs/performance.md, "The compact lookup cache").
 */
import { COMPACT_SLOT_BYTES, compactSlotsOf } from "./compact_cache.ts";

export { DEFAULT_FEED_CACHE_SIZE } from "./compact_cache.ts";
import { FEED_RULES_SLOT_BYTES, feedRulesSlotsOf } from "./feed_rules_table.ts";

/** A tenant alias entry in a V8 map: alias, user id and slot (src/ingest/tenant_cache.ts). */
export const TENANT_ENTRY_BYTES = 200;

/** The entries of each cache for `--feed-cache-size` = `feeds`. */
export interface LookupCacheSizes {
  feeds: number;
  /** A device usually has several feeds: a quarter as many. */
  devices: number;
  /** Tenant aliases (Sparkplug groups, mapped tenants) are fewer still. */
  tenants: number;
}

export function lookupCacheSizes(feeds: number): LookupCacheSizes {
  return {
    feeds,
    devices: Math.ceil(feeds / 4),
    tenants: Math.max(1000, Math.ceil(feeds / 64)),
  };
}

/** The bytes the caches of `--feed-cache-size` = `feeds` take at most, off and on the V8 heap. */
export function lookupCacheBytes(feeds: number): { offHeap: number; heap: number } {
  const sizes = lookupCacheSizes(feeds);
  const feedSlots = compactSlotsOf(sizes.feeds);
  return {
    offHeap: feedSlots * COMPACT_SLOT_BYTES +
      feedRulesSlotsOf(feedSlots) * FEED_RULES_SLOT_BYTES +
      compactSlotsOf(sizes.devices) * COMPACT_SLOT_BYTES,
    heap: sizes.tenants * TENANT_ENTRY_BYTES,
  };
}

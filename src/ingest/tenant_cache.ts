/**
 * The tenant cache: alias → user id, as the processor's tenant lookup found them in
 * `tenant_aliases` (src/ingest/write/lookups.ts `lookupTenants`; sql/008). Like the feed
 * cache: only aliases that were found are cached (one may be registered any moment),
 * entries expire after the TTL, and LISTEN/NOTIFY drops a changed or removed alias at
 * once (src/ingest/feed_notify.ts, `tenantAliasListener`).
 */
import type { ChangeListener } from "./feed_notify.ts";
import { lookupCacheSizes } from "./cache_sizes.ts";
import { LookupCache } from "./lookup_cache.ts";

/** The channel sql/008_tenant_aliases.sql notifies on; the payload is the old alias. */
export const TENANT_CHANGED_CHANNEL = "feedline_tenant_alias_changed";

/** The tenant aliases already looked up: alias → user id. */
export class TenantCache extends LookupCache<string> {}

/**
 * The tenant cache beside a feed cache of `maxEntries` feeds: tenants are far fewer than
 * feeds (src/ingest/cache_sizes.ts).
 */
export function tenantCacheFor(feeds: { ttlMs: number; maxEntries: number }): TenantCache {
  return new TenantCache({
    ttlMs: feeds.ttlMs,
    maxEntries: lookupCacheSizes(feeds.maxEntries).tenants,
  });
}

/** What LISTEN does for the tenant cache: a changed alias is dropped, a reconnect drops all. */
export function tenantAliasListener(cache: TenantCache): ChangeListener {
  return {
    channel: TENANT_CHANGED_CHANNEL,
    what: "tenant alias",
    onChange: (alias) => cache.delete(alias),
    onReset: () => cache.clear(),
  };
}

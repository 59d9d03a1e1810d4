/**
 * Keeps the feed cache honest between TTL expiries: LISTEN on the channel that the
 * trigger of sql/002_feed_change_notify.sql notifies when a feed's state, thresholds,
 * key or owner change, and drop that feed from the cache. After the listening
 * connection is (re)established the whole cache is dropped, since notifications sent
 * while it was down are lost (PostgreSQL queues them only for live listeners).
 *
 * Where LISTEN is not available (the embedded PGlite, whose one backend serves every
 * connection, so a notification would come out on whichever connection runs next, or a
 * transaction pooler) or the connection is down, the change counter (sql/017,
 * src/ingest/cache_confirm.ts) drops the caches within a third of the TTL of a change, and
 * where that cannot be read either, entries expire after the TTL.
 */
import type postgres from "postgres";
import { Counter, Gauge, type Registry } from "../prometheus.ts";
import { startCacheConfirmation } from "./cache_confirm.ts";
import { DEFAULT_FEED_CACHE_SIZE, lookupCacheSizes } from "./cache_sizes.ts";
import { DeviceCache } from "./device_cache.ts";
import { FeedCache, feedKeyOf } from "./feed_cache.ts";
import type { Logger } from "../log.ts";

/** The channel sql/002_feed_change_notify.sql notifies on. */
export const FEED_CHANGED_CHANNEL = "feedline_feed_changed";

const UUID_LENGTH = 36;

/** Parses a notification payload (`<user_id>/<key>`) into a cache key, or null. */
export function feedKeyOfNotification(payload: string): string | null {
  if (payload.length < UUID_LENGTH + 2 || payload[UUID_LENGTH] !== "/") return null;
  return feedKeyOf(payload.slice(0, UUID_LENGTH), payload.slice(UUID_LENGTH + 1));
}

/**
 * Starts listening; resolves true once the first LISTEN succeeded, false when the
 * database is PGlite (reached by URL, e.g. in tests: its one backend serves every
 * connection, so notifications would reach whichever connection runs next), refused, or
 * did not answer in `timeoutMs`.
 */
export function listenForFeedChanges(
  sql: postgres.Sql,
  cache: FeedCache,
  log: Logger,
  timeoutMs = 5_000,
  onListening?: (unlisten: () => Promise<void>) => void,
): Promise<boolean> {
  return listenForChanges(
    sql,
    {
      channel: FEED_CHANGED_CHANNEL,
      what: "feed",
      onChange(payload) {
        const key = feedKeyOfNotification(payload);
        if (key === null) cache.clear();
        else cache.delete(key);
      },
      onReset: () => cache.clear(),
    },
    log,
    timeoutMs,
    onListening,
  );
}

/** What to listen for: a channel, and what a notification on it and a reconnect do. */
export interface ChangeListener {
  channel: string;
  /** For log lines: "feed", "tenant alias". */
  what: string;
  onChange(payload: string): void;
  /** The first LISTEN and every re-LISTEN after a reconnect: what changed meanwhile was not heard. */
  onReset(): void;
}

/** Listens on `listener.channel` (see `listenForFeedChanges`, which it serves). */
export async function listenForChanges(
  sql: postgres.Sql,
  listener: ChangeListener,
  log: Logger,
  timeoutMs = 5_000,
  onListening?: (unlisten: () => Promise<void>) => void,
): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const { what } = listener;
  try {
    const [{ pglite }] = await sql<{ pglite: boolean }[]>`
      select version() like '%PGlite%' as pglite`;
    if (pglite) {
      log.debug(`PGlite has no LISTEN over its socket; the ${what} cache relies on its TTL`);
      return false;
    }
    const listening = await Promise.race([
      sql.listen(
        listener.channel,
        (payload) => {
          listener.onChange(payload);
          log.debug(`${what} changed: dropped from the ${what} cache`, { [what]: payload });
        },
        // Called on the first LISTEN and after every reconnect of the listening
        // connection: whatever changed in between was not heard, so forget everything.
        () => listener.onReset(),
      ),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    onListening?.(() => listening.unlisten());
    return true;
  } catch (error) {
    log.warn(`cannot LISTEN for ${what} changes; the ${what} cache relies on its TTL`, {
      error: (error as Error).message,
    });
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The feed cache of a serving process. Feed changes reach it at once through LISTEN
 * (sql/002) on `listen.sql`; where that is null (the embedded PGlite, a transaction
 * pooler: src/db/database.ts says why) it relies on the TTL. One log line says which.
 */
export async function createFeedCache(
  opts: {
    ttlMs: number;
    maxEntries?: number;
    /**
     * `listen`: where LISTEN goes (src/db/database.ts). `sql`: the pool that reads the
     * change counter (sql/017, src/ingest/cache_confirm.ts) every third of the TTL, so
     * that the feed and device caches keep what has not changed.
     */
    db: { sql: postgres.Sql; listen: { sql: postgres.Sql | null; how: string } };
    /** More caches kept honest the same way (the tenant aliases, src/ingest/tenant_cache.ts). */
    also?: ChangeListener[];
    /** Where the caches' metrics go (`addLookupCacheMetrics`). */
    metrics?: { registry: Registry };
  },
  log: Logger,
): Promise<{ caches: { feedCache: FeedCache; deviceCache: DeviceCache }; close(): Promise<void> }> {
  const sizes = lookupCacheSizes(opts.maxEntries ?? DEFAULT_FEED_CACHE_SIZE);
  const cache = new FeedCache({ ttlMs: opts.ttlMs, maxEntries: sizes.feeds });
  const deviceCache = new DeviceCache({ ttlMs: opts.ttlMs, maxEntries: sizes.devices });
  const unlistens: (() => Promise<void>)[] = [];
  const heard = (u: () => Promise<void>) => unlistens.push(u);
  const listen = opts.db.listen;
  const checks = opts.metrics && addLookupCacheMetrics(opts.metrics.registry, cache, deviceCache);
  if (opts.ttlMs > 0) {
    const caches = [cache, deviceCache];
    const intervalMs = Math.max(100, Math.floor(opts.ttlMs / 3));
    const confirmation = startCacheConfirmation({
      ...{ sql: opts.db.sql, caches, intervalMs, log },
      onCheck: (result) => checks?.inc({ result }),
    });
    unlistens.push(() => confirmation.stop());
  }
  if (opts.ttlMs <= 0) {
    log.info("feed cache off (--feed-cache-ttl-ms 0): every batch looks its feeds up");
  } else if (
    listen.sql && await listenForFeedChanges(listen.sql, cache, log, undefined, heard)
  ) {
    for (const listener of opts.also ?? []) {
      await listenForChanges(listen.sql, listener, log, undefined, heard);
    }
    log.info("feed cache invalidation", { how: listen.how });
  } else {
    log.info("feed cache invalidation", {
      how: listen.sql
        ? "LISTEN is not available here: feed changes reach the cache at the next check of the change counter (a third of the TTL)"
        : listen.how,
      ttl_ms: opts.ttlMs,
    });
  }
  return {
    caches: { feedCache: cache, deviceCache },
    // UNLISTEN (and stop the counter checks) before the pool ends: postgres.js re-listens
    // when its listening connection closes, and that reconnect would fail once the
    // database is gone.
    close: async () => {
      for (const unlisten of unlistens) await unlisten().catch(() => {});
    },
  };
}

/**
 * The lookup caches on /metrics (docs/operations.md): entries held, and the lookups they
 * could not answer (each one a key the batch looked up in the database: a rate close to
 * the readings' says the cache does not hold the fleet, `--feed-cache-size`). Returns the
 * counter of the change counter's checks (src/ingest/cache_confirm.ts), by result.
 */
export function addLookupCacheMetrics(
  registry: Registry,
  feeds: FeedCache,
  devices: DeviceCache,
): Counter {
  registry.add(
    new Gauge(
      "feedline_lookup_cache_entries",
      "Entries held by the feed and device caches, by cache.",
      () => [[{ cache: "feed" }, feeds.size], [{ cache: "device" }, devices.size]],
    ),
  );
  registry.add(
    new Counter(
      "feedline_lookup_cache_misses_total",
      "Feeds and devices a batch had to look up in the database (not in the cache), by cache.",
      () => [[{ cache: "feed" }, feeds.misses], [{ cache: "device" }, devices.misses]],
    ),
  );
  const checks = registry.add(
    new Counter(
      "feedline_lookup_cache_checks_total",
      "Checks of the lookup change counter (sql/017), by result: confirmed (nothing changed, " +
        "the caches keep their entries), cleared (a change: both caches dropped), unavailable.",
    ),
  );
  for (const result of ["confirmed", "cleared", "unavailable"]) checks.init({ result });
  return checks;
}

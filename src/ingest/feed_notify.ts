/**
 * Keeps the feed cache honest between TTL expiries: LISTEN on the channel that the
 * trigger of sql/002_feed_change_notify.sql notifies when a feed's state, thresholds,
 * key or owner change, and drop that feed from the cache. After the listening
 * connection is (re)established the whole cache is dropped, since notifications sent
 * while it was down are lost (PostgreSQL queues them only for live listeners).
 *
 * The TTL stays as the fallback: where LISTEN is not available (the embedded PGlite, whose
 * one backend serves every connection, so a notification would come out on whichever
 * connection runs next) or the connection is down, entries still expire.
 */
import type postgres from "postgres";
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
export async function listenForFeedChanges(
  sql: postgres.Sql,
  cache: FeedCache,
  log: Logger,
  timeoutMs = 5_000,
  onListening?: (unlisten: () => Promise<void>) => void,
): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const [{ pglite }] = await sql<{ pglite: boolean }[]>`
      select version() like '%PGlite%' as pglite`;
    if (pglite) {
      log.debug("PGlite has no LISTEN over its socket; the feed cache relies on its TTL");
      return false;
    }
    const listening = await Promise.race([
      sql.listen(
        FEED_CHANGED_CHANNEL,
        (payload) => {
          const key = feedKeyOfNotification(payload);
          if (key === null) cache.clear();
          else cache.delete(key);
          log.debug("feed changed: dropped from the feed cache", { feed: payload });
        },
        // Called on the first LISTEN and after every reconnect of the listening
        // connection: whatever changed in between was not heard, so forget everything.
        () => cache.clear(),
      ),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    onListening?.(() => listening.unlisten());
    return true;
  } catch (error) {
    log.warn("cannot LISTEN for feed changes; the feed cache relies on its TTL", {
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
  opts: { ttlMs: number; maxEntries?: number; listen: { sql: postgres.Sql | null; how: string } },
  log: Logger,
): Promise<{ cache: FeedCache; close(): Promise<void> }> {
  const cache = new FeedCache({ ttlMs: opts.ttlMs, maxEntries: opts.maxEntries });
  let unlisten: (() => Promise<void>) | null = null;
  const heard = (u: () => Promise<void>) => unlisten = u;
  if (opts.ttlMs <= 0) {
    log.info("feed cache off (--feed-cache-ttl-ms 0): every batch looks its feeds up");
  } else if (
    opts.listen.sql && await listenForFeedChanges(opts.listen.sql, cache, log, undefined, heard)
  ) {
    log.info("feed cache invalidation", { how: opts.listen.how });
  } else {
    log.info("feed cache invalidation", {
      how: opts.listen.sql
        ? "LISTEN is not available here: feed changes reach the cache when its entries expire"
        : opts.listen.how,
      ttl_ms: opts.ttlMs,
    });
  }
  return {
    cache,
    // UNLISTEN before the pool ends: postgres.js re-listens when its listening
    // connection closes, and that reconnect would fail once the database is gone.
    close: async () => {
      await unlisten?.().catch(() => {});
    },
  };
}

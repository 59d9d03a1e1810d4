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
 * (sql/002) when `listen` is true; the embedded PGlite serves all connections from one
 * backend, where LISTEN cannot work, so there it relies on the TTL.
 */
export async function createFeedCache(
  sql: postgres.Sql,
  opts: { ttlMs: number; listen: boolean },
  log: Logger,
): Promise<{ cache: FeedCache; close(): Promise<void> }> {
  const cache = new FeedCache({ ttlMs: opts.ttlMs });
  let unlisten: (() => Promise<void>) | null = null;
  if (opts.listen && opts.ttlMs > 0) {
    await listenForFeedChanges(sql, cache, log, undefined, (u) => unlisten = u);
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

/**
 * Keeps serve's lookup caches (feeds, devices) past their TTL while the database says
 * nothing they hold has changed (docs/performance.md, "Feed cache"): every statement that
 * changes a feed's or device's cached columns, or deletes one, counts in
 * `lookup_changes` (sql/017). A check reads the counter:
 *
 * - the same number as the last check: nothing cached changed since then, so every entry is
 *   current as of this check (`ConfirmedCache.confirm`), and none expires while checks keep
 *   coming every third of the TTL;
 * - another number (or the first check): the caches are cleared, and the number is the new
 *   baseline;
 * - no answer: nothing is confirmed, and entries expire by the TTL as before.
 *
 * Each answer also fences the caches (`ConfirmedCache.fence`): a lookup in flight while the
 * counter was read may have read the feeds before a change the counter already holds, so
 * its answer is not cached. LISTEN (src/ingest/feed_notify.ts) still drops a changed feed
 * at once where it is available; this bounds what a lost notification costs, and works
 * behind a transaction pooler and on the embedded PGlite.
 */
import type postgres from "postgres";
import type { Logger } from "../log.ts";
import { sqlStateOf } from "../db/errors.ts";
import type { ConfirmedCache } from "./cache_generations.ts";

/** What a check found. */
export type CheckResult = "confirmed" | "cleared" | "unavailable";

/** The counter's reader: one check at a time, `now()` on the caches' clock. */
export class CacheConfirmation {
  #baseline: bigint | null = null;
  #missing = false;

  constructor(
    private readonly sql: postgres.Sql,
    private readonly caches: readonly ConfirmedCache[],
    private readonly now: () => number = Date.now,
  ) {}

  /** Reads the counter once and confirms or clears the caches. */
  async check(): Promise<CheckResult> {
    if (this.#missing) return "unavailable";
    const sentAt = this.now();
    let changes: bigint;
    try {
      const [row] = await this.sql<{ changes: string }[]>`
        select changes::text as changes from lookup_changes`;
      changes = BigInt(row.changes);
    } catch (error) {
      // undefined_table: a database before sql/017 (serve --no-migrate): the TTL alone.
      if (sqlStateOf(error) === "42P01") this.#missing = true;
      return "unavailable";
    }
    if (this.#baseline === changes) {
      for (const cache of this.caches) {
        cache.fence();
        cache.confirm(sentAt);
      }
      return "confirmed";
    }
    // Entries held now were not read after a known count: they cannot be confirmed.
    for (const cache of this.caches) cache.clear();
    this.#baseline = changes;
    return "cleared";
  }
}

/**
 * Checks every `intervalMs` until `stop()`. A failed check is logged once until one
 * succeeds again; the caches fall back to their TTL meanwhile.
 */
export function startCacheConfirmation(
  opts: {
    sql: postgres.Sql;
    caches: readonly ConfirmedCache[];
    intervalMs: number;
    log: Logger;
    /** Each check's result (serve counts them on /metrics). */
    onCheck?(result: CheckResult): void;
  },
): { stop(): Promise<void> } {
  const confirmation = new CacheConfirmation(opts.sql, opts.caches);
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let failing = false;
  const tick = () => {
    confirmation.check().then((result) => {
      if (stopped) return;
      opts.onCheck?.(result);
      if (result === "unavailable" && !failing) {
        opts.log.info(
          "cannot read the lookup change counter (sql/017); cached feeds expire by their TTL",
        );
      }
      failing = result === "unavailable";
      if (result !== "unavailable") opts.log.debug(`lookup caches ${result}`);
    }, () => {}).finally(() => {
      if (!stopped) timer = setTimeout(tick, opts.intervalMs);
    });
  };
  tick();
  return {
    // A check in flight is not waited for: with the database gone it may hang until the
    // pool ends, which comes after this.
    stop() {
      stopped = true;
      clearTimeout(timer);
      return Promise.resolve();
    },
  };
}

/**
 * Keeps the dead letter bounded: a flood of bad traffic must not fill the disk. Every
 * `intervalMs` it deletes rejects older than the retention, then the oldest rows beyond
 * the row limit, in small batches so it never holds long locks. The payload of each row is
 * already capped (--reject-payload-cap), so rows × cap bounds the table.
 */
import type postgres from "postgres";
import type { Logger } from "../log.ts";

/** Retention settings. */
export interface RetentionOptions {
  /** Rejects older than this many hours are deleted (0: keep forever). */
  retentionHours: number;
  /** At most this many rows are kept, newest first (0: no limit). */
  maxRows: number;
  intervalMs?: number;
  /** Rows deleted per statement. */
  chunk?: number;
}

/** Deletes what the retention allows; returns how many rows went. */
export async function pruneRejects(sql: postgres.Sql, opts: RetentionOptions): Promise<number> {
  const chunk = opts.chunk ?? 10_000;
  let deleted = 0;
  if (opts.retentionHours > 0) {
    for (;;) {
      const res = await sql`
        delete from ingest_rejects where id in (
          select id from ingest_rejects
          where received_at < now() - ${opts.retentionHours} * interval '1 hour'
          limit ${chunk})`;
      deleted += res.count;
      if (res.count < chunk) break;
    }
    // The marks `feedline trace` reads for re-processed messages age out with the rejects.
    await sql`
      delete from ingest_reprocessed
      where received_at < now() - ${opts.retentionHours} * interval '1 hour'`;
  }
  if (opts.maxRows > 0) {
    // The id of the newest row that falls outside the limit; everything up to it goes.
    const [cut] = await sql<{ id: string }[]>`
      select id from ingest_rejects order by id desc offset ${opts.maxRows} limit 1`;
    if (cut) {
      for (;;) {
        const res = await sql`
          delete from ingest_rejects where id in (
            select id from ingest_rejects where id <= ${cut.id} limit ${chunk})`;
        deleted += res.count;
        if (res.count < chunk) break;
      }
    }
  }
  return deleted;
}

/** Runs `pruneRejects` periodically; returns a stop function. */
export function startRejectRetention(
  sql: postgres.Sql,
  opts: RetentionOptions,
  log: Logger,
): () => Promise<void> {
  if (opts.retentionHours <= 0 && opts.maxRows <= 0) return () => Promise.resolve();
  let running: Promise<void> | null = null;
  const tick = () => {
    if (running) return;
    running = pruneRejects(sql, opts).then((n) => {
      if (n > 0) log.info("pruned old rejects", { rows: n });
    }, (error) => {
      log.warn("pruning rejects failed; will retry", { error: (error as Error).message });
    }).finally(() => running = null);
  };
  const timer = setInterval(tick, opts.intervalMs ?? 60_000);
  tick();
  return async () => {
    clearInterval(timer);
    await running;
  };
}

/**
 * `feed_rollups` outside the ingest path (sql/011, docs/operations.md "Rollups"): the
 * retention of each width's buckets (serve's and migrate's upkeep), and the rebuild of a
 * range from the raw readings (`feedline rollups --rebuild`). The batches keep them
 * current themselves (src/ingest/write/rollups.ts).
 */
import type postgres from "postgres";
import { sqlStateOf } from "./errors.ts";
import { confirmedTransaction, type Transaction } from "./transaction.ts";

/** Where buckets start: date_bin's origin, the same in the batches' upsert. */
export const ROLLUP_ORIGIN = "2000-01-01 00:00:00+00";

/**
 * The width a coarse width `ms` is folded from: the largest finer one of `all` it is a
 * whole number of (1h from 5m in 1m,5m,1h; 1d from 1h); null for the finest width, or if
 * none divides it. Pure, shared by the option's check and the fold.
 */
export function foldSourceMs(ms: number, all: readonly number[]): number | null {
  let best: number | null = null;
  for (const f of all) {
    if (f < ms && ms % f === 0 && (best === null || f > best)) best = f;
  }
  return best;
}

/** How long the buckets of one width are kept. */
export interface RollupTier {
  /** The width, as PostgreSQL reads it (`1 hours`). */
  interval: string;
  widthMs: number;
  /** null: forever. */
  keepMs: number | null;
}

/**
 * Deletes the buckets that ended longer ago than their tier keeps; returns the rows
 * deleted per width. One statement per width with an age, each its own transaction.
 */
export async function applyRollupRetention(
  sql: postgres.Sql,
  tiers: readonly RollupTier[],
  now = new Date(),
): Promise<{ interval: string; deleted: number }[]> {
  const done: { interval: string; deleted: number }[] = [];
  const folds = tiers.some((t) => t.keepMs !== null) ? await foldWatermarks(sql) : [];
  const all = folds.map((f) => f.ms);
  for (const t of tiers) {
    if (t.keepMs === null) continue;
    // A bucket goes once all of it is older than the age: its end, bucket + width.
    let cutoff = new Date(now.getTime() - t.keepMs - t.widthMs);
    // A finer width's buckets not yet folded into a coarser one stay until they are
    // (sql/015): the fold reads them. Only the widths folded from this one (1h from 1m)
    // hold it back; 1d is folded from 1h and never reads 1m.
    for (const f of folds) {
      if (foldSourceMs(f.ms, all) !== t.widthMs) continue;
      if (f.foldedBefore && f.foldedBefore.getTime() - 1 < cutoff.getTime()) {
        cutoff = new Date(f.foldedBefore.getTime() - 1);
      }
    }
    const res = await sql`
      delete from feed_rollups where width = ${t.interval}::interval and bucket <= ${cutoff}`;
    done.push({ interval: t.interval, deleted: res.count });
  }
  return done;
}

/** One row of `rollup_folds` (sql/015). */
export interface FoldRow {
  interval: string;
  ms: number;
  /** null: 'infinity', the finest width (always written directly). */
  foldedBefore: Date | null;
}

/** The widths' watermarks (sql/015), shortest width first. */
export async function readFolds(tx: postgres.Sql | Transaction): Promise<FoldRow[]> {
  const rows = await tx<{ w: string; ms: string; fb: Date | null }[]>`
    select width::text as w, (extract(epoch from width) * 1000)::int8::text as ms,
           case when folded_before = 'infinity' then null else folded_before end as fb
    from rollup_folds order by width`;
  return rows.map((r) => ({ interval: r.w, ms: Number(r.ms), foldedBefore: r.fb }));
}

/** `readFolds`, or none before sql/015. */
async function foldWatermarks(sql: postgres.Sql): Promise<FoldRow[]> {
  try {
    return await readFolds(sql);
  } catch (error) {
    if (sqlStateOf(error) === "42P01") return []; // undefined_table: sql/015 not applied
    throw error;
  }
}

/** What a rebuild did, per width. */
export interface RebuildResult {
  interval: string;
  /** The first bucket rebuilt (a bucket starting before the oldest raw partition is kept). */
  from: Date;
  /** A coarse width's watermark: rebuilt only below it (the fold makes the rest). */
  foldedFrom: Date | null;
  deleted: number;
  written: number;
}

/**
 * Recomputes the rollups of `intervals` from `feed_values`, from the bucket holding
 * `since` (up to the bucket holding `until`, if given), in one transaction. The table is
 * locked against the batches' upserts first (SHARE ROW EXCLUSIVE: serve's batches wait),
 * so a reading committed meanwhile is in the rebuild or added after it, never both. No
 * bucket starts before `oldestRaw` (the start of feed_values' oldest range partition,
 * src/db/partitions.ts `listPartitions`): what raw retention dropped is only in the
 * rollups, and stays there.
 */
export async function rebuildRollups(
  sql: postgres.Sql,
  intervals: readonly string[],
  since: Date,
  until: Date | null,
  oldestRaw: Date | null,
): Promise<RebuildResult[]> {
  const oldest = oldestRaw;
  return await confirmedTransaction(sql, async (tx) => {
    // Folds and batches first, in the order they lock (src/db/rollup_folds.ts): a coarse
    // width is rebuilt only below its watermark; above it, its buckets are not in the
    // table yet and the fold makes them from the finer width (sql/015).
    await tx`lock table rollup_folds in exclusive mode`;
    await tx`lock table feed_rollups in share row exclusive mode`;
    const results: RebuildResult[] = [];
    for (const interval of intervals) {
      const [fold] = await tx<{ fb: Date }[]>`
        select folded_before as fb from rollup_folds
        where width = ${interval}::interval and folded_before <> 'infinity'`;
      const folded = fold?.fb ?? null;
      const [{ start, stop }] = await tx<{ start: Date; stop: Date | null }[]>`
        select greatest(date_bin(w, ${since}::timestamptz, ${ROLLUP_ORIGIN}::timestamptz),
                        case when ${oldest}::timestamptz is null then null
                             else date_bin(w, ${oldest}::timestamptz - interval '1 microsecond',
                                           ${ROLLUP_ORIGIN}::timestamptz) + w end) as start,
               -- least() skips nulls: no --until and no watermark, no end.
               least(date_bin(w, ${until}::timestamptz, ${ROLLUP_ORIGIN}::timestamptz) + w,
                     ${folded}::timestamptz) as stop
        from (select ${interval}::interval as w) x`;
      const deleted = await tx`
        delete from feed_rollups
        where width = ${interval}::interval and bucket >= ${start}
          and (${stop}::timestamptz is null or bucket < ${stop}::timestamptz)`;
      const written = await tx`
        insert into feed_rollups (feed_id, width, bucket, count, min, max, sum, first_at,
                                  last_at, last)
        select g.feed_id, ${interval}::interval, g.bucket, g.n, g.lo, g.hi, g.total, g.first_at,
               g.last_at, v.value
        from (select feed_id,
                     date_bin(${interval}::interval, created_at, ${ROLLUP_ORIGIN}::timestamptz)
                       as bucket,
                     count(*) as n, min(value) as lo, max(value) as hi, sum(value) as total,
                     min(created_at) as first_at, max(created_at) as last_at
              from feed_values
              where value is not null and created_at >= ${start}
                and (${stop}::timestamptz is null or created_at < ${stop}::timestamptz)
              group by 1, 2) g
        join feed_values v on v.feed_id = g.feed_id and v.created_at = g.last_at`;
      results.push({
        interval,
        from: start,
        foldedFrom: folded,
        deleted: deleted.count,
        written: written.count,
      });
    }
    return results;
  });
}

/** The widths `feed_rollups` holds, as PostgreSQL intervals, shortest first. */
export async function rollupWidthsStored(sql: postgres.Sql): Promise<string[]> {
  const rows = await sql<{ w: string }[]>`
    select distinct width::text as w, width from feed_rollups order by width`;
  return rows.map((r) => r.w);
}

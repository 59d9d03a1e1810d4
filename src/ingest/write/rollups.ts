/**
 * The writer of rollups (`serve --rollups 1m,1h,1d`, sql/011, docs/operations.md
 * "Rollups"): not a statement of its own but a part of the values' insert
 * (src/ingest/write/values.ts), which hands it the rows it RETURNs. Those are the rows
 * actually stored: a reading the key of feed_values absorbed (a redelivery, a replay, a
 * reading in conflict) is not among them, and a refused one is rolled back with its
 * savepoint, so no reading is counted twice or counted without being stored. Each
 * (feed, width, bucket) of the batch is merged into its row: count and sum add, min and
 * max widen, first_at, last_at and last follow device time, so a late reading updates
 * its own bucket and never moves `last` back. Only the finest width is written for live
 * readings; a coarse width only where its bucket is already folded (sql/015,
 * src/db/rollup_folds.ts): one row upsert per reading, not one per width.
 *
 * One statement for all widths; with --rollups off, the insert has no RETURNING and
 * nothing here runs.
 */
import { ROLLUP_ORIGIN } from "../../db/rollups.ts";
import type { Transaction } from "../../db/transaction.ts";
import { textArrayLiteral } from "../pg_array.ts";

/** Bucket widths, as PostgreSQL intervals (src/cli/rollup_options.ts); null: off. */
export type RollupWidths = readonly string[] | null;

/** What the values' insert returns for the rollups. */
export const ROLLUP_RETURNING = "returning feed_id, value, created_at";

/**
 * The read of the watermarks (sql/015, src/db/rollup_folds.ts), a CTE of the values'
 * statement between the insert's and the upsert's, so that the statement locks
 * feed_values, rollup_folds, feed_rollups in the order every other writer does (the feed
 * delete trigger, the fold, the rebuild): no lock cycle. FOR SHARE (ROW SHARE on the
 * table) makes a fold wait for this batch's commit, makes this statement wait for a fold
 * in progress, and returns the newest committed watermark after it.
 */
export function foldsRead(tx: Transaction, widths: readonly string[]) {
  return tx`
    select width, folded_before from rollup_folds
    where width = any(${textArrayLiteral([...widths])}::interval[])
    order by width for share`;
}

/**
 * The upsert of the rollups of `source`, a CTE of the rows the values' insert returned
 * (`ROLLUP_RETURNING`), into the widths whose bucket is already folded (`folds`, a CTE of
 * `foldsRead`): the finest width always ('infinity'), a coarse one only for a late
 * reading; a width without a row is written directly (as before sql/015). Rows go in key
 * order, so two batches touching the same buckets lock them in the same order (no
 * deadlock between serve instances).
 */
export function rollupUpsert(
  tx: Transaction,
  source: string,
  folds: string,
  widths: readonly string[],
) {
  return tx`
    insert into feed_rollups as r (feed_id, width, bucket, count, min, max, sum, first_at,
                                   last_at, last)
    select s.feed_id, w.width, date_bin(w.width, s.created_at, ${ROLLUP_ORIGIN}::timestamptz),
           count(*), min(s.value), max(s.value), sum(s.value), min(s.created_at),
           max(s.created_at), (array_agg(s.value order by s.created_at desc))[1]
    from ${tx(source)} s
    -- A reading is in a bucket before the (bucket-aligned) watermark iff it is before it.
    join (select u.width, coalesce(f.folded_before, 'infinity') as folded_before
          from unnest(${textArrayLiteral([...widths])}::interval[]) u(width)
          left join ${tx(folds)} f on f.width = u.width) w
      on s.created_at < w.folded_before
    where s.value is not null
    group by 1, 2, 3
    order by 1, 2, 3
    on conflict (feed_id, width, bucket) do update set
      count = r.count + excluded.count,
      min = least(r.min, excluded.min),
      max = greatest(r.max, excluded.max),
      sum = r.sum + excluded.sum,
      first_at = least(r.first_at, excluded.first_at),
      last_at = greatest(r.last_at, excluded.last_at),
      last = case when excluded.last_at > r.last_at then excluded.last else r.last end`;
}

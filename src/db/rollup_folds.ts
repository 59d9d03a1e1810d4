/**
 * The fold of coarse rollup widths (sql/015, docs/operations.md "Rollups",
 * docs/performance.md "Rollups (issue 23)"). With `--rollups 1m,1h,1d` a batch writes the
 * finest width (1m) for every reading, and a coarse width only for a reading whose bucket
 * is already folded (`bucket < folded_before`, late data). Here, on serve's timer:
 * materialise each coarse width's closed buckets from the finer width it is a multiple of
 * (1h from 1m, 1d from 1h) and move its `folded_before` forward, one bucket per width and
 * transaction, so catching up after a long stop never holds the batches back for long.
 *
 * Why it is exact: a fold locks `rollup_folds` EXCLUSIVE, which waits for every batch
 * holding ROW SHARE on it (each batch reads the watermarks FOR SHARE, src/ingest/write/
 * rollups.ts) and holds new ones back until it commits; its next statement, a new
 * snapshot, sees every batch that wrote under the old watermark, and a batch after it
 * reads the new one (a locking read returns the newest committed row). So each reading
 * is in a coarse bucket either by the fold or by its own batch, never both, never
 * neither; and two instances folding at once are serialised by the same lock (the
 * second finds nothing to do).
 */
import type postgres from "postgres";
import { FeedlineError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { Gauge, type Registry } from "../prometheus.ts";
import { sqlStateOf } from "./errors.ts";
import { type FoldRow, foldSourceMs, readFolds, ROLLUP_ORIGIN } from "./rollups.ts";
import { confirmedTransaction, type Transaction } from "./transaction.ts";

/** A configured width: as PostgreSQL reads it, and its length. */
export interface FoldWidth {
  interval: string;
  ms: number;
}

// Readings are never this far ahead of the clock (--max-future-skew-ms is minutes): a
// realignment materialises up to the bucket holding now + this, so nothing is left behind.
const REALIGN_AHEAD = "1 day";

/** What `prepareRollupFolds` did. */
export interface FoldPreparation {
  /** The rows matched --rollups already: nothing done. */
  unchanged: boolean;
  /** Widths new to the table: rolled up from now on (`feedline rollups --rebuild` for older). */
  added: string[];
}

/**
 * Makes `rollup_folds` describe `widths` (serve and replay call it at start, before their
 * first batch): the finest width 'infinity', each coarse one folded from its current
 * bucket if new (`firstFolded`). If the table describes other widths (--rollups changed),
 * every coarse width it holds is first brought up to date from the finest width it held
 * (up to the bucket holding now + 1 day, so it is complete for every reading stored), and
 * then each width keeps what is complete: a width that was written directly or has just
 * been completed is folded from after that. Locks as a fold does: instances starting at
 * once realign once. Throws 42P01 without sql/015.
 */
export async function prepareRollupFolds(
  sql: postgres.Sql,
  widths: readonly FoldWidth[],
  now: Date | null = null,
): Promise<FoldPreparation> {
  return await confirmedTransaction(sql, async (tx) => {
    await tx`lock table rollup_folds in exclusive mode`;
    const stored = await readFolds(tx);
    const same = stored.length === widths.length &&
      stored.every((s, i) => s.ms === widths[i].ms && (s.foldedBefore === null) === (i === 0));
    if (same) return { unchanged: true, added: [] };
    const at = tx`coalesce(${now}::timestamptz, now())`;
    const complete = new Map<number, Date>(); // width → complete below this
    const finest = stored.find((s) => s.foldedBefore === null);
    for (const s of stored) {
      const [{ end }] = await tx<{ end: Date }[]>`
        select date_bin(${s.interval}::interval, ${at} + ${REALIGN_AHEAD}::interval,
                        ${ROLLUP_ORIGIN}::timestamptz) + ${s.interval}::interval as end`;
      if (s.foldedBefore === null) complete.set(s.ms, end); // written directly: all of it
      else if (!finest) complete.set(s.ms, s.foldedBefore);
      else {
        await materialise(tx, s.interval, finest.interval, s.foldedBefore, end);
        complete.set(s.ms, end);
      }
    }
    await tx`delete from rollup_folds`;
    const added: string[] = [];
    for (const [i, w] of widths.entries()) {
      const known = complete.get(w.ms);
      if (known === undefined) added.push(w.interval);
      const source = widths.find((x) => x.ms === foldSourceMs(w.ms, widths.map((y) => y.ms)));
      const fb = i === 0 ? null : known ?? await firstFolded(tx, w.interval, source!.interval, at);
      await tx`
        insert into rollup_folds (width, folded_before)
        values (${w.interval}::interval, coalesce(${fb}::timestamptz, 'infinity'))`;
    }
    return { unchanged: false, added: stored.length === 0 ? [] : added };
  });
}

/**
 * Where a width new to `rollup_folds` starts being folded: from its current bucket, which
 * the fold rebuilds from `source` once it closes, so the batches write only the finest
 * width from the start (docs/performance.md, "Rollups (issue 23)"). Unless `width`
 * already holds more of that bucket than `source` does for some feed (it was written
 * directly, before sql/015, and `source` was not): then from the next bucket, the current
 * one staying direct.
 */
async function firstFolded(
  tx: Transaction,
  width: string,
  source: string,
  at: postgres.PendingQuery<postgres.Row[]>,
): Promise<Date> {
  const [{ fb }] = await tx<{ fb: Date }[]>`
    with cur as (
      select date_bin(${width}::interval, ${at}, ${ROLLUP_ORIGIN}::timestamptz) as b),
    mine as (
      select feed_id, sum(count) as n from feed_rollups, cur
      where width = ${width}::interval and bucket >= cur.b
        and bucket < cur.b + ${width}::interval
      group by 1),
    src as (
      select feed_id, sum(count) as n from feed_rollups, cur
      where width = ${source}::interval and bucket >= cur.b
        and bucket < cur.b + ${width}::interval
      group by 1)
    select case when exists (select 1 from mine left join src using (feed_id)
                             where src.n is null or src.n < mine.n)
                then b + ${width}::interval else b end as fb
    from cur`;
  return fb;
}

/**
 * Replaces the buckets of `width` in [from, to) by the aggregate of the `source` buckets
 * they are made of. The source must be complete there.
 */
async function materialise(tx: Transaction, width: string, source: string, from: Date, to: Date) {
  await tx`
    delete from feed_rollups
    where width = ${width}::interval and bucket >= ${from} and bucket < ${to}`;
  const res = await tx`
    insert into feed_rollups (feed_id, width, bucket, count, min, max, sum, first_at, last_at,
                              last)
    select feed_id, ${width}::interval,
           date_bin(${width}::interval, bucket, ${ROLLUP_ORIGIN}::timestamptz),
           sum(count), min(min), max(max), sum(sum), min(first_at), max(last_at),
           (array_agg(last order by last_at desc))[1]
    from feed_rollups
    where width = ${source}::interval and bucket >= ${from} and bucket < ${to}
    group by 1, 3
    order by 1, 3`;
  return res.count;
}

/** What one `foldRollups` call did. */
export interface FoldResult {
  /** Transactions that moved a watermark. */
  steps: number;
  /** Rows written per width. */
  written: Map<string, number>;
  /** Per width, where its watermark stands now (null: the finest, or no rows). */
  foldedBefore: Map<string, Date | null>;
  /** false: `maxSteps` ran out with closed buckets left (the next call goes on). */
  caughtUp: boolean;
  /** The longest step, in ms: about how long the batches waited for it. */
  longestStepMs: number;
}

/**
 * Folds every coarse width of `rollup_folds` up to its last closed bucket at `now` (the
 * bucket holding `now` stays open), one bucket per width and transaction, at most
 * `maxSteps` transactions. Nothing to do costs one plain read, no lock.
 */
export async function foldRollups(
  sql: postgres.Sql,
  opts: { now?: Date; maxSteps?: number } = {},
): Promise<FoldResult> {
  const now = opts.now ?? new Date();
  const maxSteps = opts.maxSteps ?? 48;
  const result: FoldResult = {
    steps: 0,
    written: new Map(),
    foldedBefore: new Map(),
    caughtUp: true,
    longestStepMs: 0,
  };
  for (;;) {
    if (!foldDue(await readFolds(sql), now)) break;
    if (result.steps >= maxSteps) {
      result.caughtUp = false;
      break;
    }
    const started = performance.now();
    const moved = await confirmedTransaction(sql, (tx) => foldStep(tx, now, result.written));
    if (!moved) break; // another instance folded meanwhile
    result.steps++;
    result.longestStepMs = Math.max(result.longestStepMs, performance.now() - started);
  }
  for (const r of await readFolds(sql)) result.foldedBefore.set(r.interval, r.foldedBefore);
  return result;
}

/** Where the width `row` can be folded to at `now`: its closed buckets its source covers. */
function foldTarget(row: FoldRow, rows: readonly FoldRow[], now: Date): number | null {
  if (row.foldedBefore === null) return null;
  const sourceMs = foldSourceMs(row.ms, rows.map((r) => r.ms));
  const source = rows.find((r) => r.ms === sourceMs);
  if (!source) return null;
  const origin = Date.parse(ROLLUP_ORIGIN.replace(" ", "T").replace("+00", "Z"));
  const floor = (t: number) => t - ((t - origin) % row.ms + row.ms) % row.ms;
  let target = floor(now.getTime());
  if (source.foldedBefore !== null) target = Math.min(target, floor(source.foldedBefore.getTime()));
  return Math.min(target, row.foldedBefore.getTime() + row.ms);
}

function foldDue(rows: readonly FoldRow[], now: Date): boolean {
  return rows.some((r) => {
    const t = foldTarget(r, rows, now);
    return t !== null && t > r.foldedBefore!.getTime();
  });
}

/** One transaction: each coarse width, finest first, by at most one bucket. */
async function foldStep(tx: Transaction, now: Date, written: Map<string, number>) {
  await tx`lock table rollup_folds in exclusive mode`;
  // A new statement: its snapshot holds every batch that read the old watermarks.
  const rows = await readFolds(tx);
  let moved = false;
  for (const row of rows) {
    const target = foldTarget(row, rows, now);
    if (target === null || target <= row.foldedBefore!.getTime()) continue;
    const source = rows.find((r) => r.ms === foldSourceMs(row.ms, rows.map((x) => x.ms)))!;
    const to = new Date(target);
    const n = await materialise(tx, row.interval, source.interval, row.foldedBefore!, to);
    await tx`update rollup_folds set folded_before = ${to} where width = ${row.interval}::interval`;
    written.set(row.interval, (written.get(row.interval) ?? 0) + n);
    row.foldedBefore = to; // the coarser widths fold from it in this same transaction
    moved = true;
  }
  return moved;
}

/**
 * serve's fold timer: `foldRollups` every `--rollup-fold-interval-ms` (and once at start),
 * with the watermarks as a gauge; null when `--rollups` has no coarse width. A failure is
 * logged and retried on the next tick; a fold never runs twice at once in one process.
 */
export function startRollupFolds(
  sql: postgres.Sql,
  config: { rollups?: readonly unknown[] | null; rollupFoldIntervalMs: number },
  log: Logger,
  registry?: Registry,
): (() => Promise<void>) | null {
  if (!config.rollups || config.rollups.length < 2) return null; // nothing coarse to fold
  const intervalMs = config.rollupFoldIntervalMs;
  // Dashboards and alerts read the lag as time() minus this (docs/operations.md "Rollups").
  const foldedUntil = registry?.add(
    new Gauge(
      "feedline_rollups_folded_until_timestamp_seconds",
      "Per coarse rollup width, the time up to which its buckets are folded (Unix seconds); " +
        "later buckets are in feed_rollups_live only.",
    ),
  );
  let running: Promise<void> | null = null;
  const tick = () => {
    if (running) return;
    running = foldRollups(sql).then((r) => {
      for (const [width, at] of r.foldedBefore) {
        if (at !== null) foldedUntil?.set(at.getTime() / 1000, { width });
      }
      if (r.steps === 0) return;
      log.info("rollups folded", {
        steps: r.steps,
        longest_step_ms: Math.round(r.longestStepMs),
        rows: Object.fromEntries(r.written),
        folded_before: Object.fromEntries(
          [...r.foldedBefore].filter(([, d]) => d !== null).map(([w, d]) => [w, d!.toISOString()]),
        ),
        ...(r.caughtUp ? {} : { note: "catching up: more on the next tick" }),
      });
    }, (error) => {
      log.warn("folding rollups failed; will retry", { error: (error as Error).message });
    }).finally(() => running = null);
  };
  const timer = setInterval(tick, intervalMs);
  tick();
  return async () => {
    clearInterval(timer);
    await running;
  };
}

/**
 * `prepareRollupFolds` at the start of serve and replay, with the refusal of a database
 * without the rollups' tables (`--no-migrate`, an older schema) in one line.
 */
export async function prepareRollupsAtStart(
  sql: postgres.Sql,
  widths: readonly FoldWidth[],
  where: string,
  log: Pick<Logger, "info" | "warn">,
): Promise<void> {
  let prepared: FoldPreparation;
  try {
    prepared = await prepareRollupFolds(sql, widths);
  } catch (error) {
    if (sqlStateOf(error) !== "42P01") throw error; // undefined_table
    throw new FeedlineError(
      "SCHEMA_NOT_READY",
      `${where} has no rollup tables (feed_rollups, rollup_folds: sql/011, sql/015) for ` +
        "--rollups: run `feedline migrate` first (or drop --no-migrate)",
    );
  }
  if (!prepared.unchanged) {
    log.info("rollup widths realigned to --rollups", {
      widths: widths.map((w) => w.interval),
      ...(prepared.added.length > 0
        ? {
          new_widths: prepared.added,
          note: "new widths hold readings from now on; `feedline rollups --rebuild --since " +
            "<time>` fills in older ones",
        }
        : {}),
    });
  }
}

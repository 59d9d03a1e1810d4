/**
 * Partitions for the past: before a batch is written, `PartitionCover.ensure` makes sure
 * a range partition of `feed_values` takes each of its readings' times, so a backfill
 * (`replay` of old captures, a device catching up after months offline) lands in
 * partitions of its own and not in the default partition (docs/scaling.md, "Backfill").
 * `migrate --partitions-from YYYY-MM` calls it for every interval from that month on.
 *
 * Cheap: the ranges known to exist are cached, so a batch whose times they all cover
 * costs a binary search per reading and no query. Only a time they miss costs one short
 * transaction of its own, before the batch's: it takes partition upkeep's advisory lock
 * (src/db/partitions.ts), so instances and upkeep do not race, reads the partitions
 * afresh (another instance may have made it), and creates each missing one for its
 * interval (`--partition-interval`, UTC), clipped to the gap between existing ranges so
 * none overlaps. Rows the default partition holds for a new range are moved into it in
 * the same transaction (PostgreSQL refuses the partition otherwise).
 *
 * Not created: ranges wholly older than `--retention` (upkeep would drop them at once;
 * such readings stay in the default partition, as before), with `--partition-upkeep off`
 * (pg_partman keeps the partitions), and more than `maxNew` in one call. A failure costs
 * nothing but the partition: the caller logs it and writes the batch anyway, and what
 * lands in the default partition is reported as ever.
 */
import type postgres from "postgres";
import {
  createPartition,
  isPartitioned,
  listPartitions,
  nextBoundary,
  partitionName,
  type PartitionOptions,
  periodStart,
  UPKEEP_LOCK_KEY,
} from "./partitions.ts";
import { confirmedTransaction } from "./transaction.ts";

/** What one `ensure` did. */
export interface CoverResult {
  created: string[];
  /** Rows moved out of the default partition into the new ones. */
  moved: number;
  /** Intervals needed but not created: older than the retention, or over `maxNew`. */
  skipped: number;
}

/** One range partition's bounds, ms since the epoch (±Infinity for MINVALUE/MAXVALUE). */
interface Range {
  from: number;
  to: number;
}

/** The default limit of new partitions per call. */
export const MAX_COVER_PARTITIONS = 500;

/** Creates the range partitions a batch's readings need; one per process, shared. */
export class PartitionCover {
  #known: Range[] | null = null;
  #enabled = true;
  readonly #opts: Pick<PartitionOptions, "interval" | "retentionMs" | "upkeep">;
  readonly #maxNew: number;
  readonly #now: () => number;

  constructor(
    opts: Pick<PartitionOptions, "interval" | "retentionMs" | "upkeep">,
    { maxNew = MAX_COVER_PARTITIONS, now = Date.now } = {},
  ) {
    this.#opts = opts;
    this.#maxNew = maxNew;
    this.#now = now;
    this.#enabled = opts.upkeep;
  }

  /** Makes sure a range partition takes each of `timesMs`; queries only for unknown times. */
  async ensure(sql: postgres.Sql, timesMs: Iterable<number>): Promise<CoverResult> {
    const result: CoverResult = { created: [], moved: 0, skipped: 0 };
    if (!this.#enabled) return result;
    if (this.#known === null) {
      if (!(await isPartitioned(sql))) {
        this.#enabled = false;
        return result;
      }
      this.#known = rangesOf(await listPartitions(sql));
    }
    const missing = uncovered(this.#known, timesMs);
    if (missing.length === 0) return result;
    let made: Range[] = [], created: Range[] = [], declined: Range[] = [];
    let known: Range[] = this.#known;
    await confirmedTransaction(sql, async (tx) => {
      Object.assign(result, { created: [], moved: 0, skipped: 0 });
      [made, created, declined] = [[], [], []];
      await tx`select pg_advisory_xact_lock(${UPKEEP_LOCK_KEY})`;
      // Creating a partition locks feed_values: give up rather than queue inserts behind it.
      await tx`set local lock_timeout = '10s'`;
      const parts = await listPartitions(tx);
      const ranges = rangesOf(parts);
      const defaultPart = parts.find((p) => p.isDefault)?.name ?? null;
      const cutoff = this.#opts.retentionMs === null
        ? -Infinity
        : this.#now() - this.#opts.retentionMs;
      for (const t of uncovered(ranges, missing)) {
        if (covers(made, t)) continue;
        const range = clip(ranges, t, this.#opts.interval);
        made.push(range); // each interval once
        if (range.to <= cutoff || created.length >= this.#maxNew) {
          result.skipped++;
          // Too old stays too old: not looked at again. Over the limit: next time.
          if (range.to <= cutoff) declined.push(range);
          continue;
        }
        const from = new Date(range.from), to = new Date(range.to);
        const name = partitionName(from);
        result.moved += await createPartition(tx, name, from, to, defaultPart);
        result.created.push(name);
        created.push(range);
      }
      known = ranges;
    });
    // Known once committed, and so are the intervals declined for the retention.
    this.#known = sortRanges([...known, ...created, ...declined]);
    return result;
  }
}

function rangesOf(parts: Awaited<ReturnType<typeof listPartitions>>): Range[] {
  return sortRanges(
    parts.filter((p) => !p.isDefault).map((p) => ({
      from: p.from?.getTime() ?? -Infinity,
      to: p.to?.getTime() ?? Infinity,
    })),
  );
}

function sortRanges(ranges: Range[]): Range[] {
  return ranges.sort((a, b) => a.from - b.from);
}

/** Whether one of `ranges` (sorted by start, not overlapping) takes `t`. */
function covers(ranges: Range[], t: number): boolean {
  const i = lastStartingAtOrBefore(ranges, t);
  return i >= 0 && t < ranges[i].to;
}

/** The index of the last range starting at or before `t`; -1 for none. Binary search. */
function lastStartingAtOrBefore(ranges: Range[], t: number): number {
  let lo = 0, hi = ranges.length - 1, found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (ranges[mid].from <= t) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

/** The times no range takes, in order, one per distinct ms. */
function uncovered(ranges: Range[], timesMs: Iterable<number>): number[] {
  const out = new Set<number>();
  for (const t of timesMs) if (Number.isFinite(t) && !covers(ranges, t)) out.add(t);
  return [...out].sort((a, b) => a - b);
}

/** The interval holding `t`, clipped to the gap between the ranges around it. */
function clip(ranges: Range[], t: number, interval: PartitionOptions["interval"]): Range {
  const i = lastStartingAtOrBefore(ranges, t);
  const gapFrom = i >= 0 ? ranges[i].to : -Infinity;
  const gapTo = i + 1 < ranges.length ? ranges[i + 1].from : Infinity;
  const d = new Date(t);
  return {
    from: Math.max(periodStart(d, interval).getTime(), gapFrom),
    to: Math.min(nextBoundary(d, interval).getTime(), gapTo),
  };
}

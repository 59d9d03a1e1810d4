/**
 * Backfill: the range partitions a batch's readings need, made before the batch is
 * written (src/db/partition_cover.ts), so old readings (`replay` of a past capture, a
 * straggler reaching `serve` months late) land in partitions of their own, not in the
 * default partition (docs/scaling.md, "Backfill"). Runs outside the batch's transaction:
 * a failure here is reported and the batch is written all the same.
 */
import type postgres from "postgres";
import type { DecodedMessage } from "../core/message.ts";
import type { CoverResult, PartitionCover } from "../db/partition_cover.ts";
import type { Logger } from "../log.ts";

/** Where what the cover did, or its failure, is told. */
export interface BackfillReport {
  onCreated?(result: CoverResult): void;
  onError?(error: unknown): void;
}

/**
 * The created_at (ms) of the readings a batch may store: a reading's own time, else its
 * message's receive time (src/ingest/write/plan.ts); Sparkplug metrics likewise. Rejects
 * and statuses store none.
 */
export function readingTimesMs(batch: DecodedMessage[]): number[] {
  const times: number[] = [];
  for (const { inbound, decoded } of batch) {
    const received = inbound.receivedAtUs;
    if (decoded.kind === "readings") {
      for (const r of decoded.readings) {
        times.push(Math.floor((r.tsUs ?? received + (r.receiveOffsetUs ?? 0)) / 1000));
      }
    } else if (decoded.kind === "sparkplug") {
      const sp = decoded.sparkplug;
      for (const m of sp.metrics) times.push(Math.floor((m.tsUs ?? sp.tsUs ?? received) / 1000));
    }
  }
  return times;
}

/** Makes the partitions `batch` needs; never throws (a failure goes to `onError`). */
export async function coverBatch(
  sql: postgres.Sql,
  cover: PartitionCover,
  batch: DecodedMessage[],
  report: BackfillReport = {},
): Promise<void> {
  try {
    const result = await cover.ensure(sql, readingTimesMs(batch));
    if (result.created.length > 0) report.onCreated?.(result);
  } catch (error) {
    report.onError?.(error);
  }
}

// A failing database fails every batch's try: one warning a minute says so.
const WARN_EVERY_MS = 60_000;

/** `serve`'s report: what was created, to the log; failures as a warning a minute at most. */
export function logBackfill(log: Logger, now: () => number = Date.now): BackfillReport {
  let warnedAt = -Infinity;
  let unsaid = 0;
  return {
    onCreated: (r) =>
      log.info("feed_values partitions created for old readings", {
        partitions: r.created,
        ...(r.moved > 0 ? { moved_from_default: r.moved } : {}),
      }),
    onError: (error) => {
      if (now() - warnedAt < WARN_EVERY_MS) return void unsaid++;
      log.warn("could not create a partition for old readings; they go to the default partition", {
        error: (error as Error).message,
        ...(unsaid > 0 ? { more_failures: unsaid } : {}),
      });
      warnedAt = now();
      unsaid = 0;
    },
  };
}

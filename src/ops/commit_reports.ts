/**
 * Flood warnings (src/log_flood.ts: one line per reason per --log-repeat-interval-ms,
 * with a count): rejects and conflicting readings of each committed batch, QoS 0 drops,
 * and messages feedline failed on before they were queued. Created before the intake,
 * which reports the latter here.
 */
import type { IngestMetrics } from "../ingest/metrics.ts";
import type { BatchResult } from "../ingest/processor.ts";
import type { Logger } from "../log.ts";
import { createFloodLog } from "../log_flood.ts";

/** How often the drop counters are looked at. */
const DROP_CHECK_INTERVAL_MS = 2000;

/** Where flood warnings are noted. */
export interface CommitReports {
  /**
   * A message the delivery path failed on (counted by the caller as
   * `dropped{internal_error}`): one warning per interval, with a count.
   */
  noteInternalError(topic: string, error: unknown): void;
  /** A committed batch: its rejects and conflicts. */
  committed(result: BatchResult): void;
  /** Stops the drop check; pending flood counts are written. */
  close(): void;
}

/** Creates the reports and starts the drop check. */
export function createCommitReports(opts: {
  metrics: IngestMetrics;
  log: Logger;
  logRepeatIntervalMs: number;
}): CommitReports {
  const { metrics } = opts;
  const flood = createFloodLog(opts.log, opts.logRepeatIntervalMs);
  const lastDropped = { queue_full: 0, shutdown: 0 };
  const checkDrops = () => {
    for (const reason of ["queue_full", "shutdown"] as const) {
      const n = metrics.dropped.get({ reason });
      const delta = n - lastDropped[reason];
      lastDropped[reason] = n;
      if (delta > 0) flood.note(`drop:${reason}`, "QoS 0 messages dropped", { reason }, delta);
    }
  };
  checkDrops();
  const dropCheck = setInterval(checkDrops, DROP_CHECK_INTERVAL_MS);

  return {
    noteInternalError(topic, error) {
      flood.note("drop:internal_error", "message dropped: feedline failed on it", {
        reason: "internal_error",
        topic,
        error: String((error as Error)?.message ?? error).slice(0, 500),
      });
    },
    committed(result) {
      for (const [reason, n] of Object.entries(result.rejected)) {
        const example = result.rejects.find((r) => r.reason === reason);
        flood.note(`reject:${reason}`, "messages rejected", {
          reason,
          topic: example?.topic,
          detail: example?.detail,
        }, n);
      }
      if (result.conflicts > 0) {
        const c = result.conflict;
        flood.note(
          "conflict",
          "readings not stored: a different reading already holds their key (feed, time); " +
            "two messages got one timestamp",
          {
            feed_id: c?.feedId,
            created_at: c ? new Date(c.createdAtUs / 1000).toISOString() : undefined,
            created_at_us: c?.createdAtUs,
            stored: c?.stored,
            dropped: c?.dropped,
          },
          result.conflicts,
        );
      }
    },
    close() {
      clearInterval(dropCheck);
      flood.close();
    },
  };
}

/**
 * The metrics of the ingest pipeline, by name. Accounting at message level, at any
 * moment:
 *
 *   received = outcome{stored} + outcome{rejected} + outcome{skipped}
 *            + dropped + discarded + queued + in flight
 *
 * (a message may carry several readings: the `readings_*` counters count those).
 */
import { REJECT_REASONS, SKIP_REASONS } from "../core/message.ts";
import { Counter, Histogram, Registry } from "../prometheus.ts";

/**
 * Why a message was dropped without being processed: QoS 0 on a full queue or unwritten
 * at an abandoned shutdown; any QoS when feedline itself failed on it before it was
 * queued (`internal_error`: acknowledged, so it cannot crash-loop).
 */
export type DropReason = "queue_full" | "shutdown" | "internal_error";

/** All drop reasons, for metrics and the status API. */
export const DROP_REASONS: readonly DropReason[] = ["queue_full", "shutdown", "internal_error"];

/**
 * Why a message was discarded, losing nothing: a copy the broker sent again after a
 * reconnect of a message serve holds or has written, which is kept and written once
 * (`redelivered`; src/mqtt/held_copies.ts); or an unacknowledged QoS 1/2 message left with
 * the broker, which sends it again, at an abandoned shutdown (`shutdown`).
 */
export const DISCARD_REASONS = ["redelivered", "shutdown"] as const;

/** One of DISCARD_REASONS. */
export type DiscardReason = typeof DISCARD_REASONS[number];

/** Creates the pipeline's metrics in a registry. */
export function createIngestMetrics(registry = new Registry()) {
  const m = {
    registry,
    received: registry.add(
      new Counter("feedline_messages_received_total", "Messages received from the source."),
    ),
    processed: registry.add(
      new Counter("feedline_messages_processed_total", "Messages whose batch was committed."),
    ),
    outcomes: registry.add(
      new Counter(
        "feedline_message_outcomes_total",
        "Committed messages by outcome: stored, rejected (in ingest_rejects) or skipped.",
      ),
    ),
    discarded: registry.add(
      new Counter(
        "feedline_messages_discarded_total",
        "Messages not written, losing nothing, by reason: redelivered (a copy the broker sent " +
          "again of a message serve holds or wrote, which is written once), shutdown " +
          "(unacknowledged when the shutdown timeout ran out; the broker sends it again).",
      ),
    ),
    dropped: registry.add(
      new Counter(
        "feedline_messages_dropped_total",
        "Messages dropped unwritten, by reason: queue_full and shutdown (QoS 0), " +
          "internal_error (feedline failed on it; acknowledged).",
      ),
    ),
    sessionsLost: registry.add(
      new Counter(
        "feedline_sessions_lost_total",
        "Reconnects that found no session at the broker where one was expected: what the " +
          "broker held for serve and what was published meanwhile is lost.",
      ),
    ),
    uncaught: registry.add(
      new Counter(
        "feedline_uncaught_errors_total",
        "Exceptions and promise rejections no code handled, logged instead of ending the " +
          "process, by kind (uncaught_exception, unhandled_rejection).",
      ),
    ),
    stored: registry.add(new Counter("feedline_readings_stored_total", "Readings stored.")),
    skipped: registry.add(
      new Counter("feedline_readings_skipped_total", "Readings skipped, by reason."),
    ),
    rejected: registry.add(
      new Counter(
        "feedline_rejects_total",
        "Rejected messages written to ingest_rejects, by reason.",
      ),
    ),
    conflicts: registry.add(
      new Counter(
        "feedline_readings_conflicts_total",
        "Readings not stored because a different reading already holds their key " +
          "(feed_id, created_at): two messages with one key, an anomaly (each also " +
          "dead-lettered as value_conflict).",
      ),
    ),
    statuses: registry.add(
      new Counter("feedline_device_statuses_total", "Device status messages applied."),
    ),
    reprocessed: registry.add(
      new Counter(
        "feedline_rejects_reprocessed_total",
        "Dead-lettered messages serve processed again after a registration " +
          "(--reprocess-on-register), by outcome: stored, rejected (again), skipped.",
      ),
    ),
    rejectsCleared: registry.add(
      new Counter(
        "feedline_rejects_cleared_total",
        "Rows of ingest_rejects deleted by re-processing after a registration, their " +
          "message now stored or skipped, by reason.",
      ),
    ),
    batches: registry.add(new Counter("feedline_batches_total", "Batches committed.")),
    carefulRewrites: registry.add(
      new Counter(
        "feedline_batch_careful_rewrites_total",
        "Batches the fast write could not store (a duplicate, a refused row), written again " +
          "the careful way.",
      ),
    ),
    batchErrors: registry.add(
      new Counter("feedline_batch_errors_total", "Failed batch attempts (retried)."),
    ),
    batchSize: registry.add(
      new Histogram("feedline_batch_size", "Messages per committed batch.", [
        1,
        10,
        50,
        100,
        500,
        1000,
        5000,
        10000,
        50000,
      ]),
    ),
    batchDuration: registry.add(
      new Histogram("feedline_batch_duration_seconds", "Time to process and commit a batch.", [
        0.001,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1,
        2.5,
        5,
        10,
      ]),
    ),
    lag: registry.add(
      new Histogram("feedline_ingest_lag_seconds", "Receive to commit, per message.", [
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1,
        2.5,
        5,
        10,
        30,
        60,
      ]),
    ),
  };
  for (const reason of SKIP_REASONS) m.skipped.init({ reason });
  for (const reason of REJECT_REASONS) m.rejected.init({ reason });
  for (const reason of DROP_REASONS) m.dropped.init({ reason });
  for (const outcome of ["stored", "rejected", "skipped"]) m.outcomes.init({ outcome });
  for (const reason of DISCARD_REASONS) m.discarded.init({ reason });
  for (const outcome of ["stored", "rejected", "skipped"]) m.reprocessed.init({ outcome });
  for (const kind of ["uncaught_exception", "unhandled_rejection"]) m.uncaught.init({ kind });
  return m;
}

/** Rows of ingest_rejects cleared by re-processing, by reason (for serve's final line). */
export function clearedByReason(m: IngestMetrics): Record<string, number> {
  const out: Record<string, number> = {};
  for (const reason of REJECT_REASONS) {
    const n = m.rejectsCleared.get({ reason });
    if (n > 0) out[reason] = n;
  }
  return out;
}

/** The pipeline's metrics. */
export type IngestMetrics = ReturnType<typeof createIngestMetrics>;

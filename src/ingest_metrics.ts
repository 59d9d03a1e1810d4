/**
 * The metrics of the ingest pipeline, by name. Accounting at message level:
 * received = processed + dropped + queued + in flight (a processed message may still
 * yield several stored, skipped or rejected readings: see the per-reading counters).
 */
import { REJECT_REASONS, SKIP_REASONS } from "./message.ts";
import { Counter, Gauge, Histogram, Registry } from "./metrics.ts";

/** Why a message was dropped without being processed. */
export type DropReason = "queue_full" | "shutdown";

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
    dropped: registry.add(
      new Counter("feedline_messages_dropped_total", "QoS 0 messages dropped, by reason."),
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
    statuses: registry.add(
      new Counter("feedline_device_statuses_total", "Device status messages applied."),
    ),
    batches: registry.add(new Counter("feedline_batches_total", "Batches committed.")),
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
  for (const reason of ["queue_full", "shutdown"]) m.dropped.init({ reason });
  return m;
}

/** The pipeline's metrics. */
export type IngestMetrics = ReturnType<typeof createIngestMetrics>;

/** Adds a gauge read at scrape time. */
export function addGauge(m: IngestMetrics, name: string, help: string, read: () => number): Gauge {
  return m.registry.add(new Gauge(name, help, read));
}

/**
 * Every gauge `serve` exposes on /metrics, in one place (documented in
 * docs/operations.md): the queues, the batch in flight, the broker and the database, the
 * capture file, and the process's memory. Each is read at scrape time.
 */
import type { IngestMetrics } from "../ingest/metrics.ts";
import { Gauge } from "../prometheus.ts";

/** What the gauges read. */
export interface GaugeSources {
  pipeline: {
    readonly dataQueued: number;
    readonly statusQueued: number;
    readonly unacked: number;
    readonly ackFlushAt: number;
    readonly inFlight: number;
    readonly oldestQueuedMs: number;
    readonly batchAgeMs: number;
    readonly queuedBytes: number;
    readonly holdingBack: object | null;
  };
  source: { readonly connected: boolean; readonly subscribed: boolean };
  databaseUp: () => boolean;
  /** Failed capture writes, when `--capture` is on. */
  captureErrors: (() => number) | null;
  /** Epoch ms the process started. */
  startedAt: number;
  /** Open alerts by kind, as of the last silence check (src/ops/alerts.ts). */
  alertsOpen?: () => [{ kind: string }, number][];
}

/** The gauge set by a commit rather than read at scrape time. */
export interface CommitGauge {
  /** A batch committed now. */
  committed(): void;
}

/** Adds serve's gauges to the metrics' registry. */
export function addServeGauges(m: IngestMetrics, s: GaugeSources): CommitGauge {
  const add = (name: string, help: string, read?: ConstructorParameters<typeof Gauge>[2]) =>
    m.registry.add(new Gauge(name, help, read));
  const { pipeline, source } = s;
  const lastCommit = add(
    "feedline_last_commit_timestamp_seconds",
    "Unix time of the last committed batch (0: none yet).",
  );
  add(
    "feedline_queue_oldest_age_seconds",
    "How long the oldest queued message has waited: how far behind ingest is.",
    () => pipeline.oldestQueuedMs / 1000,
  );
  add(
    "feedline_batch_age_seconds",
    "How long the batch being written has been uncommitted (0: none): a stalled writer.",
    () => pipeline.batchAgeMs / 1000,
  );
  add(
    "feedline_broker_connected",
    "1 while the MQTT connection is up (subscribed or not).",
    () => source.connected ? 1 : 0,
  );
  add("feedline_process_heap_used_bytes", "V8 heap in use.", () => Deno.memoryUsage().heapUsed);
  add(
    "feedline_process_start_time_seconds",
    "Unix time the process started.",
    () => s.startedAt / 1000,
  );
  add("feedline_queue_depth_data", "Feed data messages queued.", () => pipeline.dataQueued);
  add("feedline_queue_depth_status", "Status messages queued.", () => pipeline.statusQueued);
  add(
    "feedline_queue_bytes",
    "Bytes queued, as --queue-bytes counts them.",
    () => pipeline.queuedBytes,
  );
  add(
    "feedline_queue_holding_back",
    "1 while a queue is full (by messages or bytes) and serve holds the broker back.",
    () => pipeline.holdingBack ? 1 : 0,
  );
  add(
    "feedline_unacked_messages",
    "Messages received, not yet acknowledged.",
    () => pipeline.unacked,
  );
  add(
    "feedline_ack_window_learned",
    "Unacknowledged messages at which a batch is written at once: the broker's in-flight " +
      "window as learnt, at most --ack-window.",
    () => pipeline.ackFlushAt,
  );
  add(
    "feedline_in_flight_messages",
    "Messages in the batch being written.",
    () => pipeline.inFlight,
  );
  add("feedline_broker_up", "1 when subscribed to the broker.", () => source.subscribed ? 1 : 0);
  add(
    "feedline_database_up",
    "1 when the database answers its probe and the last batch was written.",
    () => s.databaseUp() ? 1 : 0,
  );
  const captureErrors = s.captureErrors;
  if (captureErrors) {
    add(
      "feedline_capture_write_errors",
      "Failed writes to the --capture file since start (their messages are not in it).",
      captureErrors,
    );
  }
  if (s.alertsOpen) {
    add(
      "feedline_alerts_open",
      "Alerts open in the database, by kind (above, below, stale), as of the last silence " +
        "check: the same for every instance of a group.",
      s.alertsOpen,
    );
  }
  // The resident memory, and what it is made of: V8's heap in use (above) and reserved,
  // and memory held outside it (buffers).
  add("feedline_process_resident_memory_bytes", "Resident set size.", () => Deno.memoryUsage().rss);
  add("feedline_process_heap_total_bytes", "V8 heap reserved.", () => Deno.memoryUsage().heapTotal);
  add(
    "feedline_process_external_memory_bytes",
    "Memory outside the V8 heap held by JavaScript objects (buffers).",
    () => Deno.memoryUsage().external,
  );
  return { committed: () => lastCommit.set(Date.now() / 1000) };
}

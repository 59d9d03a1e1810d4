/**
 * Readiness behind `/readyz` and the status page: the broker subscription, the database
 * (its probe, and the writer's last attempt), and the stalled-writer check, which also
 * logs a stalled batch once and when it moves again (docs/operations.md).
 */
import type postgres from "postgres";
import { startDatabaseProbe } from "../db/health.ts";
import type { Pipeline } from "../ingest/pipeline.ts";
import type { Logger } from "../log.ts";
import type { MqttSource } from "../mqtt/source.ts";
import type { QueueReadiness } from "./http.ts";

const PROBE_TIMEOUT_MS = 3000;

/** What readiness needs from serve's configuration. */
export interface ReadinessConfig {
  dbCheckIntervalMs: number;
  /** A batch uncommitted for this long is a stalled writer. */
  stallWarnMs: number;
}

/** What `/readyz` answers from. */
export interface ServeReadiness {
  readiness(): {
    broker: boolean;
    database: boolean;
    writer: { stalled: boolean; batch_age_ms: number };
    queue: QueueReadiness;
  };
  /** The probe answers and the last batch attempt did not fail on the database. */
  databaseUp(): boolean;
  /** A batch committed: the database answers (sooner than the next probe). */
  committed(): void;
  close(): void;
}

/** Starts the database probe and the stall check. */
export function createReadiness(opts: {
  config: ReadinessConfig;
  sql: postgres.Sql;
  log: Logger;
  pipeline: Pipeline;
  source: MqttSource;
}): ServeReadiness {
  const { config, sql, log, pipeline, source } = opts;
  const probe = startDatabaseProbe(sql, {
    intervalMs: config.dbCheckIntervalMs,
    timeoutMs: PROBE_TIMEOUT_MS,
    onChange: (up) =>
      up
        ? log.info("database reachable again")
        : log.warn("database unreachable: not ready until it answers"),
  });
  /** The batch (by number) a stall warning was logged for. */
  let stalledBatch: number | null = null;

  const databaseUp = () => probe.up && pipeline.dbReady;
  const writer = () => {
    const age = Math.round(pipeline.batchAgeMs);
    return { stalled: age >= config.stallWarnMs, batch_age_ms: age };
  };

  /** Logs a stalled writer once per stalled batch, and when it moves again. */
  const checkStall = () => {
    const w = writer();
    if (w.stalled && stalledBatch !== pipeline.batchesTaken) {
      stalledBatch = pipeline.batchesTaken;
      log.warn("writer stalled: a batch is not committed yet", {
        batch_age_ms: w.batch_age_ms,
        messages: pipeline.inFlight,
        stall_warn_ms: config.stallWarnMs,
        database: databaseUp(),
      });
    } else if (stalledBatch !== null && !w.stalled) {
      log.info("writer moving again: the stalled batch is done");
      stalledBatch = null;
    }
  };
  const stallCheck = setInterval(
    checkStall,
    Math.max(10, Math.min(1000, Math.floor(config.stallWarnMs / 4))),
  );

  return {
    readiness: () => ({
      broker: source.subscribed,
      database: databaseUp(),
      writer: writer(),
      queue: queueOf(pipeline),
    }),
    databaseUp,
    committed: () => probe.answered(),
    close() {
      clearInterval(stallCheck);
      probe.stop();
    },
  };
}

/** The queue part of `/readyz`: whether serve holds the broker back, and by which bound. */
export function queueOf(pipeline: Pipeline): QueueReadiness {
  const full = pipeline.holdingBack;
  return {
    holding_back: full !== null,
    full,
    messages: pipeline.queued,
    bytes: pipeline.queuedBytes,
    max_bytes: pipeline.maxQueueBytes,
    in_flight_bytes: pipeline.inFlightBytes,
  };
}

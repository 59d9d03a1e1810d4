/**
 * The operations side of `serve`, wired in one place: the database probe and the
 * stalled-writer check behind `/readyz`, flood warnings for rejects, drops and internal
 * errors, feedback to publishers on the errors
 * topic, the extra gauges, a short in-process history of the counters, and the status
 * page with its JSON endpoints.
 *
 * Created once the pipeline and the MQTT source exist (its `onCommitted` is then added to
 * the pipeline's after-commit listeners), closed with serve.
 */
import type postgres from "postgres";
import { startDatabaseProbe } from "../db/health.ts";
import { ErrorFeedback } from "./feedback.ts";
import type { RouteHandler } from "./http.ts";
import { addGauge, addServeGauges, DROP_REASONS, type IngestMetrics } from "../ingest/metrics.ts";
import { createLogger, type Logger, type LogLevel, secretsOfUrl } from "../log.ts";
import { createFloodLog } from "../log_flood.ts";
import { REJECT_REASONS, SKIP_REASONS } from "../core/message.ts";
import { Counter, Gauge } from "../prometheus.ts";
import type { MqttSource } from "../mqtt/source.ts";
import type { Pipeline, QueueItem } from "../ingest/pipeline.ts";
import type { BatchResult } from "../ingest/processor.ts";
import { queryDevices, queryFeeds, queryRejects } from "./status_queries.ts";
import { STATUS_PAGE_HTML } from "./status_page.ts";
import type { TopicRouter } from "../core/topics.ts";

/** How often the history is sampled, and how many samples are kept (10 minutes). */
export const HISTORY_INTERVAL_MS = 2000;
const HISTORY_SAMPLES = 300;
/** Database answers of the status page are reused this long. */
const STATUS_CACHE_MS = 2000;
const PROBE_TIMEOUT_MS = 3000;

/** What the operations side needs from serve's configuration. */
export interface OperationsConfig {
  router: TopicRouter;
  /** Parsed errors topic template, or null when feedback is off. */
  errorsTopic: string | null;
  errorsPerMinute: number;
  dbCheckIntervalMs: number;
  logRepeatIntervalMs: number;
  /** A batch uncommitted for this long is a stalled writer. */
  stallWarnMs: number;
}

/**
 * One history sample: counter totals and gauges at time `t` (epoch ms). Messages and
 * readings differ: a bulk message carries several readings.
 */
export interface HistorySample {
  t: number;
  /** Messages received. */
  received: number;
  /** Readings stored. */
  stored: number;
  /** Messages committed with the outcome stored (their readings or their device status). */
  messages_stored: number;
  /** Messages rejected. */
  rejected: number;
  dropped: number;
  queued: number;
  unacked: number;
  /** Mean batch duration since the previous sample, ms (null: no batch). */
  batch_ms: number | null;
}

/** The logger `serve` uses: its level and format, with the configuration's secrets masked. */
export function createServeLogger(
  config: {
    logLevel: LogLevel;
    logFormat: "auto" | "json" | "text";
    mqttUrl?: string;
    mqttPassword?: string;
    databaseUrl?: string;
    listenDatabaseUrl?: string;
  },
  write?: (line: string) => void,
): Logger {
  return createLogger({
    level: config.logLevel,
    format: config.logFormat,
    write,
    secrets: [
      config.mqttPassword,
      ...secretsOfUrl(config.mqttUrl),
      ...secretsOfUrl(config.databaseUrl),
      ...secretsOfUrl(config.listenDatabaseUrl),
    ].filter((s): s is string => !!s),
  });
}

/** Creates the operations side; see the module doc for its life cycle. */
export function createOperations(opts: {
  config: OperationsConfig;
  sql: postgres.Sql;
  metrics: IngestMetrics;
  log: Logger;
  pipeline: Pipeline;
  source: MqttSource;
  /** Capture write errors so far, when serve captures. */
  captureErrors?: () => number;
}) {
  const { config, sql, metrics, log, pipeline, source } = opts;
  const startedAt = Date.now();
  const flood = createFloodLog(log, config.logRepeatIntervalMs);
  const probe = startDatabaseProbe(sql, {
    intervalMs: config.dbCheckIntervalMs,
    timeoutMs: PROBE_TIMEOUT_MS,
    onChange: (up) =>
      up
        ? log.info("database reachable again")
        : log.warn("database unreachable: not ready until it answers"),
  });
  const feedbackCounter = metrics.registry.add(
    new Counter(
      "feedline_error_feedback_total",
      "Reject feedback on the errors topic, by outcome (published, rate_limited, no_user, " +
        "not_connected).",
    ),
  );
  const lastCommit = metrics.registry.add(
    new Gauge(
      "feedline_last_commit_timestamp_seconds",
      "Unix time of the last committed batch (0: none yet).",
    ),
  );
  let feedback: ErrorFeedback | null = null;
  const history: HistorySample[] = [];
  let sampler: ReturnType<typeof setInterval> | null = null;
  let lastBatch = { count: 0, sum: 0 };
  const lastDropped = { queue_full: 0, shutdown: 0 };
  let stallCheck: ReturnType<typeof setInterval> | null = null;
  /** The batch (by number) a stall warning was logged for. */
  let stalledBatch: number | null = null;

  const databaseUp = () => probe.up && (pipeline?.dbReady ?? true);
  const writer = () => {
    const age = Math.round(pipeline?.batchAgeMs ?? 0);
    return { stalled: age >= config.stallWarnMs, batch_age_ms: age };
  };
  const readiness = () => ({
    broker: source?.subscribed ?? false,
    database: databaseUp(),
    writer: writer(),
  });

  /** Logs a stalled writer once per stalled batch, and when it moves again. */
  const checkStall = () => {
    if (!pipeline) return;
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

  const sample = () => {
    const { count, sum } = metrics.batchDuration;
    const batches = count - lastBatch.count;
    history.push({
      t: Date.now(),
      received: metrics.received.total(),
      stored: metrics.stored.total(),
      messages_stored: metrics.outcomes.get({ outcome: "stored" }),
      rejected: metrics.rejected.total(),
      dropped: metrics.dropped.total(),
      queued: pipeline?.queued ?? 0,
      unacked: pipeline?.unacked ?? 0,
      batch_ms: batches > 0 ? ((sum - lastBatch.sum) / batches) * 1000 : null,
    });
    if (history.length > HISTORY_SAMPLES) history.shift();
    lastBatch = { count, sum };
    for (const reason of ["queue_full", "shutdown"] as const) {
      const n = metrics.dropped.get({ reason });
      const delta = n - lastDropped[reason];
      lastDropped[reason] = n;
      if (delta > 0) {
        flood.note(`drop:${reason}`, "QoS 0 messages dropped", { reason }, delta);
      }
    }
  };

  const byReason = (counter: Counter, reasons: readonly string[]) =>
    Object.fromEntries(reasons.map((reason) => [reason, counter.get({ reason })]));

  const live = () => ({
    now: Date.now(),
    started_at: startedAt,
    ready: readiness(),
    totals: {
      received: metrics.received.total(),
      processed: metrics.processed.total(),
      /** Readings (a bulk message carries several); `messages_stored` counts messages. */
      stored: metrics.stored.total(),
      messages_stored: metrics.outcomes.get({ outcome: "stored" }),
      rejected: metrics.rejected.total(),
      skipped: metrics.skipped.total(),
      dropped: metrics.dropped.total(),
      statuses: metrics.statuses.total(),
      batches: metrics.batches.total(),
    },
    rejected_by_reason: byReason(metrics.rejected, REJECT_REASONS),
    skipped_by_reason: byReason(metrics.skipped, SKIP_REASONS),
    dropped_by_reason: byReason(metrics.dropped, DROP_REASONS),
    queue: {
      data: pipeline?.dataQueued ?? 0,
      status: pipeline?.statusQueued ?? 0,
      unacked: pipeline?.unacked ?? 0,
      in_flight: pipeline?.inFlight ?? 0,
      oldest_ms: pipeline?.oldestQueuedMs ?? 0,
    },
    batch: {
      count: metrics.batchDuration.count,
      mean_ms: metrics.batchDuration.count > 0
        ? (metrics.batchDuration.sum / metrics.batchDuration.count) * 1000
        : null,
      lag_mean_ms: metrics.lag.count > 0 ? (metrics.lag.sum / metrics.lag.count) * 1000 : null,
    },
    memory_bytes: Deno.memoryUsage().rss,
    history_interval_ms: HISTORY_INTERVAL_MS,
    history,
  });

  const routes: Record<string, RouteHandler> = {
    "/": () =>
      new Response(STATUS_PAGE_HTML, {
        headers: {
          "content-type": "text/html; charset=utf-8",
          // Everything is inline; nothing else may load (the page shows device data).
          "content-security-policy":
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; " +
            "connect-src 'self'; img-src data:",
        },
      }),
    "/api/live": () => Response.json(live(), { headers: NO_STORE }),
    "/api/feeds": cached(() => queryFeeds(sql)),
    "/api/rejects": cached(() => queryRejects(sql)),
    "/api/devices": cached(() => queryDevices(sql)),
  };

  const api = {
    routes,
    readiness,
    databaseUp,

    /**
     * A message the delivery path failed on (counted by the caller as
     * `dropped{internal_error}`): one warning per interval, with a count.
     */
    noteInternalError(topic: string, error: unknown): void {
      flood.note("drop:internal_error", "message dropped: feedline failed on it", {
        reason: "internal_error",
        topic,
        error: String((error as Error)?.message ?? error).slice(0, 500),
      });
    },

    /**
     * The pipeline's after-commit hook: readiness (a commit proves the database answers),
     * flood warnings and feedback for the rejects.
     */
    onCommitted(_items: QueueItem[], result: BatchResult): void {
      probe.answered();
      lastCommit.set(Date.now() / 1000);
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
      if (feedback && result.rejects.length > 0) feedback.report(result.rejects);
    },
  };

  /** Adds the gauges that need the pipeline and source, starts feedback and history. */
  function start(p: Pipeline, s: MqttSource): void {
    if (config.errorsTopic) {
      feedback = new ErrorFeedback({
        template: config.errorsTopic,
        perUserPerMinute: config.errorsPerMinute,
        router: config.router,
        counter: feedbackCounter,
        publish(topic, payload) {
          if (!s.client.connected) return false;
          s.client.publish(topic, payload, { qos: 0, retain: false });
          return true;
        },
      });
    }
    addGauge(
      metrics,
      "feedline_queue_oldest_age_seconds",
      "How long the oldest queued message has waited: how far behind ingest is.",
      () => p.oldestQueuedMs / 1000,
    );
    addGauge(
      metrics,
      "feedline_batch_age_seconds",
      "How long the batch being written has been uncommitted (0: none): a stalled writer.",
      () => p.batchAgeMs / 1000,
    );
    addGauge(
      metrics,
      "feedline_broker_connected",
      "1 while the MQTT connection is up (subscribed or not).",
      () => s.connected ? 1 : 0,
    );
    addGauge(
      metrics,
      "feedline_process_heap_used_bytes",
      "V8 heap in use.",
      () => Deno.memoryUsage().heapUsed,
    );
    addGauge(
      metrics,
      "feedline_process_start_time_seconds",
      "Unix time the process started.",
      () => startedAt / 1000,
    );
    sample();
    sampler = setInterval(sample, HISTORY_INTERVAL_MS);
    stallCheck = setInterval(
      checkStall,
      Math.max(10, Math.min(1000, Math.floor(config.stallWarnMs / 4))),
    );
  }
  start(pipeline, source);
  addServeGauges(metrics, {
    pipeline,
    brokerUp: () => source.subscribed,
    databaseUp,
    captureErrors: opts.captureErrors ?? null,
  });

  return {
    ...api,

    /** Stops the timers; pending flood counts are written. */
    close(): Promise<void> {
      if (sampler !== null) clearInterval(sampler);
      sampler = null;
      if (stallCheck !== null) clearInterval(stallCheck);
      stallCheck = null;
      probe.stop();
      flood.close();
      return Promise.resolve();
    },
  };
}

/** The operations side of a running serve. */
export type Operations = ReturnType<typeof createOperations>;

const NO_STORE = { "cache-control": "no-store" };

/** A JSON route whose answer is computed at most once per STATUS_CACHE_MS. */
function cached<T>(load: () => Promise<T>): RouteHandler {
  let value: { at: number; body: Promise<T> } | null = null;
  return async () => {
    const now = Date.now();
    if (!value || now - value.at > STATUS_CACHE_MS) {
      const body = load();
      value = { at: now, body };
      // A failure is not cached: the next request asks again.
      body.catch(() => {
        if (value?.body === body) value = null;
      });
    }
    const body = value.body;
    try {
      return Response.json(await body, { headers: NO_STORE });
    } catch (error) {
      return Response.json(
        { error: `database query failed: ${(error as Error).message}` },
        { status: 503, headers: NO_STORE },
      );
    }
  };
}

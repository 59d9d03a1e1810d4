/**
 * What the status page reads (src/ops/status_page.ts): `/api/live` (totals, queues,
 * batches, readiness and a short in-process history of the counters, sampled every 2 s
 * for 10 minutes) and the database's answers (`/api/feeds`, `/api/rejects`,
 * `/api/devices`, `/api/alerts`), each reused for 2 s.
 */
import type postgres from "postgres";
import { REJECT_REASONS, SKIP_REASONS } from "../core/message.ts";
import type { TopicRouter } from "../core/topics.ts";
import { DROP_REASONS, type IngestMetrics } from "../ingest/metrics.ts";
import type { Pipeline } from "../ingest/pipeline.ts";
import type { Counter } from "../prometheus.ts";
import type { RouteHandler } from "./http.ts";
import type { ServeReadiness } from "./readiness.ts";
import { STATUS_PAGE_HTML } from "./status_page.ts";
import { queryAlerts, queryDevices, queryFeeds, queryRejects } from "./status_queries.ts";

/** How often the history is sampled, and how many samples are kept (10 minutes). */
export const HISTORY_INTERVAL_MS = 2000;
const HISTORY_SAMPLES = 300;
/** Database answers of the status page are reused this long. */
const STATUS_CACHE_MS = 2000;

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

/** The status page's routes, and the history sampler behind them. */
export interface LiveStatus {
  routes: Record<string, RouteHandler>;
  close(): void;
}

/** Starts the history sampler; its routes answer from then on. */
export function createLiveStatus(opts: {
  sql: postgres.Sql;
  metrics: IngestMetrics;
  pipeline: Pipeline;
  readiness: ServeReadiness;
  /** Epoch ms serve started. */
  startedAt: number;
  /** Tells whose a reject is, for the devices' ingest (null: not shown). */
  router?: TopicRouter | null;
}): LiveStatus {
  const { sql, metrics, pipeline, readiness, startedAt } = opts;
  const history: HistorySample[] = [];
  let lastBatch = { count: 0, sum: 0 };

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
      queued: pipeline.queued,
      unacked: pipeline.unacked,
      batch_ms: batches > 0 ? ((sum - lastBatch.sum) / batches) * 1000 : null,
    });
    if (history.length > HISTORY_SAMPLES) history.shift();
    lastBatch = { count, sum };
  };

  const byReason = (counter: Counter, reasons: readonly string[]) =>
    Object.fromEntries(reasons.map((reason) => [reason, counter.get({ reason })]));

  const live = () => ({
    now: Date.now(),
    started_at: startedAt,
    ready: readiness.readiness(),
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
      data: pipeline.dataQueued,
      status: pipeline.statusQueued,
      unacked: pipeline.unacked,
      in_flight: pipeline.inFlight,
      oldest_ms: pipeline.oldestQueuedMs,
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
    "/api/devices": cached(() => queryDevices(sql, opts.router ?? null)),
    "/api/alerts": cached(() => queryAlerts(sql)),
  };

  sample();
  const sampler = setInterval(sample, HISTORY_INTERVAL_MS);
  return {
    routes,
    close: () => clearInterval(sampler),
  };
}

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

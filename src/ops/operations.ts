/**
 * The operations side of `serve`, wired in one place once the pipeline and the MQTT
 * source exist: readiness (src/ops/readiness.ts), the status page's routes and history
 * (src/ops/live.ts), the gauges (src/ops/gauges.ts), feedback to publishers on the
 * errors topic (src/ops/feedback.ts), alerts: events and the silence check
 * (src/ops/alerts.ts), and the mover of last values (src/db/last_values.ts). The flood
 * warnings (src/ops/commit_reports.ts) are created before the intake and handed in.
 *
 * Its `onCommitted` is added to the pipeline's after-commit listeners; closed with serve.
 */
import { Buffer } from "node:buffer";
import type postgres from "postgres";
import { startLastValueMover } from "../db/last_values.ts";
import type { TopicRouter } from "../core/topics.ts";
import type { IngestMetrics } from "../ingest/metrics.ts";
import type { Pipeline, QueueItem } from "../ingest/pipeline.ts";
import type { BatchResult } from "../ingest/processor.ts";
import type { Logger } from "../log.ts";
import type { MqttSource } from "../mqtt/source.ts";
import { Counter } from "../prometheus.ts";
import { type AlertsConfig, createAlertOps } from "./alerts.ts";
import type { CommitReports } from "./commit_reports.ts";
import { ErrorFeedback } from "./feedback.ts";
import { addServeGauges } from "./gauges.ts";
import { createLiveStatus } from "./live.ts";
import { createReadiness, type ReadinessConfig } from "./readiness.ts";
import { createSparkplugOps } from "./sparkplug_ops.ts";

/** What the operations side needs from serve's configuration. */
export interface OperationsConfig extends ReadinessConfig, AlertsConfig {
  router: TopicRouter;
  /** Parsed errors topic template, or null when feedback is off. */
  errorsTopic: string | null;
  errorsPerMinute: number;
  decode: { sparkplug?: { namespace: string } };
  sparkplugRebirth: boolean;
  /** `--last-value-move-ms`. */
  lastValueMoveMs: number;
}

/** Creates the operations side; see the module doc for its life cycle. */
export function createOperations(opts: {
  config: OperationsConfig;
  sql: postgres.Sql;
  metrics: IngestMetrics;
  log: Logger;
  pipeline: Pipeline;
  source: MqttSource;
  reports: CommitReports;
  /** Capture write errors so far, when serve captures. */
  captureErrors?: () => number;
}) {
  const { config, sql, metrics, log, pipeline, source, reports } = opts;
  const startedAt = Date.now();
  const readiness = createReadiness({ config, sql, log, pipeline, source });
  const feedbackCounter = metrics.registry.add(
    new Counter(
      "feedline_error_feedback_total",
      "Reject feedback on the errors topic, by outcome (published, rate_limited, no_user, " +
        "not_connected).",
    ),
  );
  const feedback = config.errorsTopic
    ? new ErrorFeedback({
      template: config.errorsTopic,
      perUserPerMinute: config.errorsPerMinute,
      router: config.router,
      counter: feedbackCounter,
      publish(topic, payload) {
        if (!source.client.connected) return false;
        source.client.publish(topic, payload, { qos: 0, retain: false });
        return true;
      },
    })
    : null;
  const sparkplug = createSparkplugOps({
    registry: metrics.registry,
    namespace: config.decode.sparkplug?.namespace ?? null,
    rebirth: config.sparkplugRebirth,
    publish(topic, payload) {
      if (!source.client.connected) return false;
      source.client.publish(topic, Buffer.from(payload), { qos: 0, retain: false });
      return true;
    },
  });
  const alerts = createAlertOps({
    ...{ config, sql, log, registry: metrics.registry },
    publish(topic, payload) {
      if (!source.client.connected) return false;
      source.client.publish(topic, payload, { qos: 1, retain: false });
      return true;
    },
  });
  const gauges = addServeGauges(metrics, {
    pipeline,
    source,
    databaseUp: readiness.databaseUp,
    captureErrors: opts.captureErrors ?? null,
    startedAt,
    alertsOpen: alerts.openByKind,
  });
  const stopMover = startLastValueMover(sql, log, config.lastValueMoveMs);
  const live = createLiveStatus({
    ...{ sql, metrics, pipeline, readiness, startedAt },
    router: config.router,
  });

  return {
    routes: live.routes,
    readiness: readiness.readiness,
    databaseUp: readiness.databaseUp,

    /**
     * The pipeline's after-commit hook: readiness (a commit proves the database answers),
     * flood warnings and feedback for the rejects.
     */
    onCommitted(items: QueueItem[], result: BatchResult): void {
      readiness.committed();
      gauges.committed();
      reports.committed(result);
      if (feedback && result.rejects.length > 0) feedback.report(result.rejects);
      sparkplug.committed(items, result.rejects);
      if (result.alerts) alerts.report(result.alerts);
    },

    /** Stops the timers; the last values pending are moved once more. */
    async close(): Promise<void> {
      live.close();
      readiness.close();
      await alerts.close();
      await stopMover();
    },
  };
}

/** The operations side of a running serve. */
export type Operations = ReturnType<typeof createOperations>;

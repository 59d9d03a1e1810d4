/**
 * Alerts on the operations side of `serve` (docs/operations.md, "Alerts"): each alert a
 * batch opened or closed is published, QoS 1, not retained, on its user's alerts topic
 * (default `{user_id}/alerts`) after the commit, by serve's own connection, rate-limited
 * like the errors topic (src/ops/rate_limit.ts); and every `--alert-check-interval-ms` the
 * silence check runs (src/ingest/silence_check.ts), its events are published the same
 * way, and the open alerts are counted for `feedline_alerts_open`.
 *
 * Publishing never waits: the alert is already a row of `feed_alerts` (and a NOTIFY on
 * `feedline_alerts`); the event is a courtesy. While the client is disconnected it is
 * dropped and counted, not queued.
 */
import type postgres from "postgres";
import { formatTimestampUs } from "../core/payload.ts";
import { checkSilence, openAlertsByKind } from "../ingest/silence_check.ts";
import { ALERT_KINDS, type AlertKind } from "../ingest/write/alert_plan.ts";
import type { AlertEvent } from "../ingest/write/alerts.ts";
import type { Logger } from "../log.ts";
import { Counter } from "../prometheus.ts";
import { UserRateLimit } from "./rate_limit.ts";

/** Alert events per second over all users. */
const GLOBAL_PER_SECOND = 1000;

/** What the alerts need from serve's configuration. */
export interface AlertsConfig {
  /** Parsed alerts topic template, or null when events are off. */
  alertsTopic: string | null;
  alertsPerMinute: number;
  /** 0: no silence check. */
  alertCheckIntervalMs: number;
}

/** The alerts side of a running serve. */
export interface AlertOps {
  /** Publishes the events of a committed batch. */
  report(events: readonly AlertEvent[]): void;
  /** Open alerts by kind as of the last check, for the gauge. */
  openByKind(): [{ kind: AlertKind }, number][];
  /** Runs one silence check now (the timer's work), publishes its events. */
  check(): Promise<void>;
  close(): Promise<void>;
}

/** The JSON of one event on the alerts topic. */
export function alertPayload(e: AlertEvent, suppressed: number): string {
  return JSON.stringify({
    event: e.event,
    kind: e.kind,
    feed: e.feedKey,
    feed_id: e.feedId,
    alert_id: e.id,
    since: formatTimestampUs(e.sinceUs),
    at: formatTimestampUs(e.atUs),
    value: e.value,
    threshold: e.threshold,
    peak: e.peak,
    ...(e.maxSilenceS !== undefined ? { max_silence_s: e.maxSilenceS } : {}),
    suppressed,
  });
}

/** Starts the silence check; `report` publishes from then on. */
export function createAlertOps(opts: {
  config: AlertsConfig;
  sql: postgres.Sql;
  registry: { add(counter: Counter): Counter };
  log: Logger;
  /** Publishes QoS 1 without waiting; false when not connected. */
  publish(topic: string, payload: string): boolean;
  now?: () => number;
}): AlertOps {
  const { config, sql, log } = opts;
  const now = opts.now ?? Date.now;
  const counter = opts.registry.add(
    new Counter(
      "feedline_alert_events_total",
      "Alert events on the alerts topic, by outcome (published, rate_limited, not_connected).",
    ),
  );
  for (const outcome of ["published", "rate_limited", "not_connected"]) counter.init({ outcome });
  const limit = new UserRateLimit(config.alertsPerMinute, GLOBAL_PER_SECOND, now());
  let open = new Map<AlertKind, number>();

  const report = (events: readonly AlertEvent[]) => {
    const template = config.alertsTopic;
    if (!template) return;
    for (const e of events) {
      // One alerts topic per user, in the lower-case form the database keeps.
      const user = e.userId.toLowerCase();
      const bucket = limit.take(user, now());
      if (!bucket) {
        counter.inc({ outcome: "rate_limited" });
        continue;
      }
      const topic = template.replaceAll("{user_id}", user);
      if (!opts.publish(topic, alertPayload(e, bucket.suppressed))) {
        counter.inc({ outcome: "not_connected" });
        continue;
      }
      bucket.suppressed = 0;
      counter.inc({ outcome: "published" });
    }
  };

  let failing = false;
  const check = async () => {
    try {
      report(await checkSilence(sql));
      open = await openAlertsByKind(sql);
      if (failing) log.info("the silence check works again");
      failing = false;
    } catch (error) {
      // Logged once per run of failures; the next interval tries again.
      if (!failing) {
        log.warn("the silence check failed; retrying every interval", {
          error: (error as Error).message,
        });
      }
      failing = true;
    }
  };

  let running: Promise<void> | null = null;
  const tick = () => {
    running ??= check().finally(() => running = null);
  };
  const timer = config.alertCheckIntervalMs > 0
    ? setInterval(tick, config.alertCheckIntervalMs)
    : undefined;
  if (timer !== undefined) tick();

  return {
    report,
    openByKind: () => ALERT_KINDS.map((kind) => [{ kind }, open.get(kind) ?? 0]),
    check,
    async close() {
      clearInterval(timer);
      await running;
    },
  };
}

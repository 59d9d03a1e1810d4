/**
 * Options of the operations side of `serve`: feedback to publishers, alert events and the
 * silence check, the mover of last values, the database probe and the stalled-writer
 * threshold behind `/readyz`, and how often flood warnings are written.
 */
import { z } from "zod";
import { option, zs } from "./options.ts";

/**
 * Between moves of the last values (src/db/last_values.ts): each move updates every feed
 * that had readings once, so a longer interval costs PostgreSQL less per reading over a large
 * fleet (docs/performance.md, "Fifth round").
 */
const DEFAULT_MOVE_MS = 30_000;

/** Operations options, spread into serve's option table. */
export const operationsOptions = {
  errorsTopic: option({
    flag: "errors-topic",
    env: "FEEDLINE_ERRORS_TOPIC",
    schema: z.string().min(1).default("{user_id}/errors"),
    defaultText: "{user_id}/errors",
    doc: "Every reject is also published here (QoS 0) with its reason and topic; `off` to disable.",
  }),
  errorsPerMinute: option({
    flag: "errors-per-minute",
    env: "FEEDLINE_ERRORS_PER_MINUTE",
    schema: zs.int(1, 1_000_000).default(60),
    defaultText: "60",
    doc: "Feedback messages per user per minute at most; the rest are counted as suppressed.",
  }),
  alertsTopic: option({
    flag: "alerts-topic",
    env: "FEEDLINE_ALERTS_TOPIC",
    schema: z.string().min(1).default("{user_id}/alerts"),
    defaultText: "{user_id}/alerts",
    doc: "Every alert opened or closed is also published here (QoS 1, after the commit); " +
      "`off` to disable. See docs/operations.md, Alerts.",
  }),
  alertsPerMinute: option({
    flag: "alerts-per-minute",
    env: "FEEDLINE_ALERTS_PER_MINUTE",
    schema: zs.int(1, 1_000_000).default(60),
    defaultText: "60",
    doc: "Alert events per user per minute at most; the rest are counted as suppressed (the " +
      "alerts themselves are all in feed_alerts).",
  }),
  alertCheckIntervalMs: option({
    flag: "alert-check-interval-ms",
    env: "FEEDLINE_ALERT_CHECK_INTERVAL_MS",
    schema: zs.int(0, 3_600_000).default(10_000),
    defaultText: "10000",
    doc: "How often serve opens stale alerts for feeds silent longer than their max_silence " +
      "(and refreshes feedline_alerts_open); 0: never.",
  }),
  lastValueMoveMs: option({
    flag: "last-value-move-ms",
    env: "FEEDLINE_LAST_VALUE_MOVE_MS",
    schema: zs.int(100, 3_600_000).default(DEFAULT_MOVE_MS),
    defaultText: String(DEFAULT_MOVE_MS),
    doc: "How often serve moves the last values batches appended into feed_last_values " +
      "(feed_latest_values is current at once; feed_last_values alone lags by this much).",
  }),
  dbCheckIntervalMs: option({
    flag: "db-check-interval-ms",
    env: "FEEDLINE_DB_CHECK_INTERVAL_MS",
    schema: zs.int(50, 3_600_000).default(5000),
    defaultText: "5000",
    doc: "How often `select 1` checks the database for /readyz and feedline_database_up.",
  }),
  stallWarnMs: option({
    flag: "stall-warn-ms",
    env: "FEEDLINE_STALL_WARN_MS",
    schema: zs.int(10, 3_600_000).default(30_000),
    defaultText: "30000",
    doc: "A batch still uncommitted after this long is a stalled writer: /readyz answers 503 " +
      "with its age and a warning is logged.",
  }),
  logRepeatIntervalMs: option({
    flag: "log-repeat-interval-ms",
    env: "FEEDLINE_LOG_REPEAT_INTERVAL_MS",
    schema: zs.int(10, 3_600_000).default(10_000),
    defaultText: "10000",
    doc: "Floods (rejects, drops) log one line per reason per interval, with counts.",
  }),
};

/**
 * Alert events on the alerts topic without a broker or a database (src/ops/alerts.ts):
 * one topic per user, the payload, the rate limit with `suppressed`, a disconnected
 * client, and `off`. With no check interval the silence check never runs, so no
 * database is touched.
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import type { AlertEvent } from "../ingest/write/alerts.ts";
import { silentLogger } from "../log.ts";
import { Registry } from "../prometheus.ts";
import { createAlertOps } from "./alerts.ts";

const USER = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
const T0 = Date.UTC(2026, 0, 1, 10) * 1000;

function event(more: Partial<AlertEvent> = {}): AlertEvent {
  return {
    event: "opened",
    id: 7,
    userId: USER,
    feedId: 3,
    feedKey: "temp",
    kind: "above",
    sinceUs: T0,
    atUs: T0 + 30e6,
    value: 91.5,
    threshold: 85,
    peak: 93.1,
    ...more,
  };
}

function ops(topic: string | null, connected = () => true) {
  let now = 0;
  const sent: [string, Record<string, unknown>][] = [];
  const registry = new Registry();
  const alerts = createAlertOps({
    config: { alertsTopic: topic, alertsPerMinute: 2, alertCheckIntervalMs: 0 },
    sql: {} as postgres.Sql,
    registry,
    log: silentLogger,
    now: () => now,
    publish: (t, payload) => connected() && (sent.push([t, JSON.parse(payload)]), true),
  });
  return { alerts, sent, registry, tick: (ms: number) => now += ms };
}

Deno.test("alert events go to the user's alerts topic with the alert's fields", async () => {
  const { alerts, sent } = ops("{user_id}/alerts");
  alerts.report([event({ userId: USER.toUpperCase() })]);
  assert.deepEqual(sent, [[`${USER}/alerts`, {
    event: "opened",
    kind: "above",
    feed: "temp",
    feed_id: 3,
    alert_id: 7,
    since: "2026-01-01T10:00:00.000000Z",
    at: "2026-01-01T10:00:30.000000Z",
    value: 91.5,
    threshold: 85,
    peak: 93.1,
    suppressed: 0,
  }]]);
  alerts.report([
    event({ kind: "stale", value: null, threshold: null, peak: null, maxSilenceS: 60 }),
  ]);
  assert.equal(sent[1][1].max_silence_s, 60);
  await alerts.close();
});

Deno.test("alert events are rate-limited per user; what was held back is reported next", async () => {
  const { alerts, sent, registry, tick } = ops("{user_id}/alerts");
  alerts.report([event(), event({ event: "closed" }), event(), event()]);
  assert.equal(sent.length, 2);
  tick(30_000); // half a minute: one token back
  alerts.report([event({ event: "closed" })]);
  assert.deepEqual([sent.length, sent[2][1].suppressed, sent[2][1].event], [3, 2, "closed"]);
  const text = registry.render();
  assert.match(text, /feedline_alert_events_total\{outcome="published"\} 3\n/);
  assert.match(text, /feedline_alert_events_total\{outcome="rate_limited"\} 2\n/);
  await alerts.close();
});

Deno.test("a disconnected client counts the event as not_connected; off publishes nothing", async () => {
  const down = ops("{user_id}/alerts", () => false);
  down.alerts.report([event()]);
  assert.equal(down.sent.length, 0);
  assert.match(down.registry.render(), /outcome="not_connected"\} 1\n/);
  await down.alerts.close();
  const off = ops(null);
  off.alerts.report([event()]);
  assert.equal(off.sent.length, 0);
  assert.match(off.registry.render(), /outcome="published"\} 0\n/);
  assert.deepEqual(off.alerts.openByKind(), [
    [{ kind: "above" }, 0],
    [{ kind: "below" }, 0],
    [{ kind: "stale" }, 0],
  ]);
  await off.alerts.close();
});

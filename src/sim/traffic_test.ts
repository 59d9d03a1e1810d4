import assert from "node:assert/strict";
import { decode } from "../core/decode.ts";
import { parseTimestamp } from "../core/payload.ts";
import { buildFleet, type Fleet } from "./fleet.ts";
import { compileTopics, DEFAULT_TEMPLATES } from "../core/topics.ts";
import { BAD_REASONS, createTraffic, isoMicros, type SimMessage } from "./traffic.ts";

const SPEC = { users: 3, devicesPerUser: 4, feedsPerDevice: 5 };
const T0 = Date.UTC(2026, 0, 1) * 1000;

function messages(seed: number, fleet: Fleet, n: number, badRatio = 0.2): SimMessage<string>[] {
  const traffic = createTraffic(seed, {
    fleet,
    templates: DEFAULT_TEMPLATES,
    formats: ["plain", "json", "bulk"],
    badRatio,
    spikeRatio: 0.05,
    maxPayloadBytes: 65536,
  });
  return Array.from({ length: n }, (_, i) => traffic.next(T0 + i * 5000));
}

Deno.test("buildFleet() gives the same ids, codes, keys and thresholds for the same seed", () => {
  const a = buildFleet({ seed: 9, ...SPEC });
  const b = buildFleet({ seed: 9, ...SPEC });
  assert.deepEqual(a, b);
  assert.notDeepEqual(
    a.users.map((u) => u.id),
    buildFleet({ seed: 10, ...SPEC }).users.map((u) => u.id),
  );
  assert.equal(a.devices.length, 12);
  const keys = a.users.flatMap((u) => u.devices.flatMap((d) => d.feeds.map((f) => f.key)));
  assert.equal(new Set(keys).size, 60, "feed keys are unique");
  const temperature = a.devices.flatMap((d) => d.feeds).find((f) => f.kind === "temperature")!;
  assert.deepEqual([temperature.thresholdMin, temperature.thresholdMax], [-40, 85]);
});

Deno.test("createTraffic() sends the same messages for the same seed and model times", () => {
  const fleet = buildFleet({ seed: 9, ...SPEC });
  assert.deepEqual(messages(9, fleet, 500), messages(9, fleet, 500));
  assert.notDeepEqual(messages(9, fleet, 50), messages(10, fleet, 50));
});

Deno.test("createTraffic() messages decode as serve decodes them: readings, or the intended reject", () => {
  const fleet = buildFleet({ seed: 5, ...SPEC });
  const router = compileTopics(DEFAULT_TEMPLATES);
  const encoder = new TextEncoder();
  const seen = new Set<string>();
  const kinds = new Set<string>();
  for (const [i, msg] of messages(5, fleet, 2000).entries()) {
    kinds.add(msg.kind);
    const decoded = decode({
      topic: msg.topic,
      payload: encoder.encode(msg.payload),
      qos: 1,
      retain: false,
      receivedAtUs: T0 + i * 5000,
    }, { router, maxPayloadBytes: 65536, maxTextLength: 255, maxFutureSkewMs: 300_000 });
    if (msg.kind === "bad" || msg.kind === "spike") seen.add(msg.reason!);
    switch (msg.reason) {
      case undefined:
        assert.equal(decoded.kind, "readings", `${msg.topic} ${msg.payload}`);
        if (decoded.kind === "readings") {
          assert.equal(decoded.readings.length, msg.readings);
          assert.equal(decoded.rejects.length, 0);
        }
        break;
      // Found out only against the database: the message itself decodes.
      case "unknown_feed":
      case "out_of_range":
        assert.equal(decoded.kind, "readings");
        break;
      case "unknown_device":
        assert.equal(decoded.kind, "status");
        break;
      default:
        assert.equal(decoded.kind, "reject");
        if (decoded.kind === "reject") assert.equal(decoded.reason, msg.reason, msg.payload);
    }
  }
  assert.deepEqual([...seen].sort(), [...BAD_REASONS].sort());
  assert.deepEqual([...kinds].sort(), ["bad", "bulk", "json", "plain", "spike"]);
});

Deno.test("createTraffic() names only the reasons the fleet can produce", () => {
  // A single counter feed per device has no thresholds, so nothing can be out of range.
  const fleet = buildFleet({ seed: 1, users: 1, devicesPerUser: 1, feedsPerDevice: 1 });
  fleet.devices[0].feeds = [{
    ...fleet.devices[0].feeds[0],
    thresholdMin: null,
    thresholdMax: null,
  }];
  const traffic = createTraffic(1, {
    fleet,
    templates: DEFAULT_TEMPLATES,
    formats: ["plain"],
    badRatio: 1,
    spikeRatio: 0,
    maxPayloadBytes: 100,
  });
  assert.ok(!traffic.reasons.includes("out_of_range"));
  const reasons = Array.from({ length: 18 }, () => traffic.next(T0).reason);
  assert.ok(!reasons.includes("out_of_range"));
  assert.equal(new Set(reasons).size, 9);
});

Deno.test("isoMicros() keeps microseconds, which serve's timestamp parser reads back", () => {
  const us = Date.UTC(2026, 0, 1) * 1000 + 123_456;
  assert.equal(isoMicros(us), "2026-01-01T00:00:00.123456Z");
  assert.equal(parseTimestamp(isoMicros(us)), us);
});

/** `n` messages of a one-user fleet with alert-driving options, a reading every `stepUs`. */
function alertTraffic(
  options: { driftRatio?: number; silentRatio?: number; silentAfterUs?: number },
  devices: number,
  n: number,
  stepUs: number,
) {
  const fleet = buildFleet({ seed: 3, users: 1, devicesPerUser: devices, feedsPerDevice: 5 });
  const traffic = createTraffic(3, {
    fleet,
    templates: DEFAULT_TEMPLATES,
    formats: ["plain"],
    badRatio: 0,
    spikeRatio: 0,
    maxPayloadBytes: 65536,
    thresholdMode: "alert",
    ...options,
  });
  return { fleet, messages: Array.from({ length: n }, (_, i) => traffic.next(T0 + i * stepUs)) };
}

Deno.test("--drift-ratio 1: every feed with thresholds drifts out of its range and back, again", () => {
  // Two drift cycles (DRIFT_PERIOD_US, 2 min) of model time.
  const { fleet, messages: sent } = alertTraffic({ driftRatio: 1 }, 1, 4000, 60_000);
  for (const feed of fleet.devices[0].feeds.filter((f) => f.thresholdMax !== null)) {
    const values = sent.filter((m) => m.topic.endsWith(`/${feed.key}`)).map((m) =>
      Number(m.payload)
    );
    const out = values.map((v) => v > feed.thresholdMax! || v < feed.thresholdMin!);
    // Runs of out-of-range readings, each followed by readings back in range.
    const excursions = out.filter((o, i) => o && !out[i - 1]).length;
    assert.ok(excursions >= 2, `${feed.key}: ${excursions} excursions`);
    assert.ok(out.filter((o) => !o).length > out.filter((o) => o).length, feed.key);
  }
  // Without it, the same fleet's values stay in range.
  const calm = alertTraffic({}, 1, 4000, 60_000);
  const ranged = new Map(calm.fleet.devices[0].feeds.map((f) => [f.key, f]));
  for (const m of calm.messages) {
    const f = ranged.get(m.topic.split("/").pop()!)!;
    if (f.thresholdMax !== null) assert.ok(Number(m.payload) <= f.thresholdMax, m.payload);
  }
});

Deno.test("--silent-ratio: the silent devices publish nothing after --silent-after; one keeps publishing", () => {
  const after = 1000 * 5_000;
  const { fleet, messages: sent } = alertTraffic(
    { silentRatio: 0.5, silentAfterUs: after },
    4,
    2000,
    5_000,
  );
  const before = new Set(sent.slice(0, 1000).map((m) => m.device));
  const later = new Set(sent.slice(1000).map((m) => m.device));
  assert.equal(before.size, 4);
  assert.equal(later.size, 2, "half of the 4 devices went quiet");
  assert.equal(fleet.devices.length, 4);
  const all = alertTraffic({ silentRatio: 1, silentAfterUs: 0 }, 3, 200, 5_000);
  assert.equal(new Set(all.messages.slice(1).map((m) => m.device)).size, 1);
});

Deno.test("threshold mode alert: a spike is a reading to store, and no bad message is out_of_range", () => {
  const fleet = buildFleet({ seed: 5, ...SPEC });
  const traffic = createTraffic(5, {
    fleet,
    templates: DEFAULT_TEMPLATES,
    formats: ["plain"],
    badRatio: 0.5,
    spikeRatio: 0.5,
    maxPayloadBytes: 65536,
    thresholdMode: "alert",
  });
  assert.ok(!traffic.reasons.includes("out_of_range"));
  const sent = Array.from({ length: 400 }, (_, i) => traffic.next(T0 + i));
  const spikes = sent.filter((m) => m.kind === "spike");
  assert.ok(spikes.length > 0);
  assert.ok(spikes.every((m) => m.readings === 1 && m.reason === undefined));
  assert.ok(!sent.some((m) => m.reason === "out_of_range"));
});

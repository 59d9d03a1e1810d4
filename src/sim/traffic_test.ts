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

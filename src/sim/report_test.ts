import assert from "node:assert/strict";
import { buildSummary, createSendStats, formatSummary } from "./report.ts";

const base = {
  seed: 1,
  broker: "mqtt://127.0.0.1:1883",
  protocol: "3.1.1" as const,
  qos: 1,
  fleet: { users: 1, devices: 2, feeds: 8 },
  connections: 2,
  registered: null,
  manifest: null,
};

function sent() {
  const send = createSendStats();
  send.sent.bad = 6;
  send.badByReason = { bad_payload: 2, unknown_feed: 3, unknown_device: 1 };
  return send;
}

Deno.test("buildSummary() against a serve that auto-registers: unknown feeds and devices are stored, not meant to be rejected", () => {
  const s = buildSummary({ ...base, auto_register: true }, sent(), null, 1000, null);
  assert.deepEqual(s.rejects_intended, { bad_payload: 2 });
  assert.deepEqual(s.stored_by_auto_register, { unknown_feed: 3, unknown_device: 1 });
  const text = formatSummary(s);
  assert.match(text, /meant to be rejected: bad_payload 2\n/);
  assert.match(
    text,
    /stored, not rejected \(serve auto-registers unknown feeds and devices\): unknown_feed 3, unknown_device 1/,
  );
});

Deno.test("buildSummary() without auto-register (or not known) counts every bad message as meant to be rejected", () => {
  for (const autoRegister of [false, null]) {
    const s = buildSummary({ ...base, auto_register: autoRegister }, sent(), null, 1000, null);
    assert.deepEqual(s.rejects_intended, { bad_payload: 2, unknown_feed: 3, unknown_device: 1 });
    assert.deepEqual(s.stored_by_auto_register, {});
    assert.doesNotMatch(formatSummary(s), /auto-registers/);
  }
});

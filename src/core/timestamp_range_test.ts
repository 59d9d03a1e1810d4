import assert from "node:assert/strict";
import { decode, type DecodeOptions } from "./decode.ts";
import { compileTopics } from "./topics.ts";

const U = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
const opts: DecodeOptions = {
  router: compileTopics(),
  maxPayloadBytes: 1024,
  maxTextLength: 16,
  maxFutureSkewMs: 60_000,
};

/** The reject detail of one message, or its kind when it is not rejected. */
function detailOf(topic: string, payload: string): string {
  const d = decode({
    topic,
    payload: new TextEncoder().encode(payload),
    qos: 1,
    retain: false,
    receivedAtUs: Date.UTC(2026, 0, 1) * 1000,
  }, opts);
  if (d.kind === "reject") return `${d.reason}: ${d.detail}`;
  if (d.kind === "readings" && d.rejects.length > 0) {
    return `${d.rejects[0].reason}: ${d.rejects[0].detail}`;
  }
  return d.kind;
}

Deno.test("a bad_timestamp reject says which rule: before 2000, or unparsable", () => {
  const feed = `${U}/d1/feeds/t`;
  const before = /^bad_timestamp: timestamp before 2000: .* \(a clock that was never set\?\)$/;
  assert.match(detailOf(feed, '{"value": 1, "ts": 0}'), before);
  assert.match(detailOf(feed, '{"value": 1, "ts": "12"}'), before);
  assert.match(detailOf(feed, '{"value": 1, "ts": -5}'), before);
  assert.match(detailOf(feed, '{"value": 1, "ts": "1999-12-31T23:59:59Z"}'), before);
  assert.match(detailOf(`${U}/d1/feeds`, '{"ts": 0, "a": 1}'), before);
  assert.match(detailOf(`${U}/d1/status`, '{"status": "online", "ts": 946684799}'), before);
  assert.equal(
    detailOf(feed, '{"value": 1, "ts": "last tuesday"}'),
    "bad_timestamp: unparsable timestamp: last tuesday",
  );
  assert.match(detailOf(feed, '{"value": 1, "ts": 1e30}'), /^bad_timestamp: timestamp after 9999/);
});

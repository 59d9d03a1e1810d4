import assert from "node:assert/strict";
import { encodeSparkplug } from "../core/sparkplug/encode.ts";
import {
  encodeCaptureLine,
  formatMicros,
  parseCaptureLine,
  parseMosquittoLine,
  sniffFormat,
} from "./format.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

Deno.test("formatMicros() keeps all six fraction digits of the receive time", () => {
  assert.equal(formatMicros(1767225600123456), "2026-01-01T00:00:00.123456Z");
  assert.equal(formatMicros(1767225600000001), "2026-01-01T00:00:00.000001Z");
  assert.equal(formatMicros(1767225600999000), "2026-01-01T00:00:00.999000Z");
});

Deno.test("a capture line round-trips topic, UTF-8 payload, qos, retain and receive time", () => {
  const line = encodeCaptureLine({
    topic: "u/d/feeds/t",
    payload: bytes('{"value": "é \\"q\\""}'),
    qos: 1,
    retain: true,
    receivedAtUs: 1767225600123456,
  });
  const parsed = parseCaptureLine(line);
  assert.ok(parsed.ok);
  assert.equal(parsed.entry.topic, "u/d/feeds/t");
  assert.equal(new TextDecoder().decode(parsed.entry.payload), '{"value": "é \\"q\\""}');
  assert.equal(parsed.entry.qos, 1);
  assert.equal(parsed.entry.retain, true);
  assert.equal(parsed.entry.receivedAtUs, 1767225600123456);
  assert.equal(parsed.entry.exactTime, true);
});

Deno.test("a payload that is not UTF-8 is written as payload_b64 and read back byte for byte", () => {
  const payload = new Uint8Array([0xff, 0x00, 0xc3, 0x28]);
  const line = encodeCaptureLine({
    topic: "a/b",
    payload,
    qos: 0,
    retain: false,
    receivedAtUs: 1767225600000000,
  });
  assert.match(line, /"payload_b64":"/);
  const parsed = parseCaptureLine(line);
  assert.ok(parsed.ok);
  assert.deepEqual(parsed.entry.payload, payload);
});

Deno.test("Sparkplug payloads round-trip byte for byte, UTF-8-looking ones and a leading BOM too", () => {
  const payloads = [
    // A Sparkplug B DDATA (timestamp, one metric by alias with an int): binary.
    encodeSparkplug({
      timestamp: 1767225600123,
      seq: 3,
      metrics: [{ alias: 1, value: 200, datatype: 3 }],
    }),
    // One whose bytes all happen to be ASCII, so the line holds it as text.
    encodeSparkplug({ seq: 5, metrics: [{ alias: 2, value: 7, datatype: 3 }] }),
    // A UTF-8 byte order mark first: a text decoder drops it unless told not to.
    new Uint8Array([0xef, 0xbb, 0xbf, 0x31]),
  ];
  for (const payload of payloads) {
    const line = encodeCaptureLine({
      topic: "spBv1.0/G/DDATA/E/D",
      payload,
      qos: 1,
      retain: false,
      receivedAtUs: 1767225600000000,
    });
    const parsed = parseCaptureLine(line);
    assert.ok(parsed.ok);
    assert.deepEqual(parsed.entry.payload, payload, line);
  }
});

Deno.test("a dropped message carries its reason in the line", () => {
  const line = encodeCaptureLine(
    { topic: "a/b", payload: bytes("1"), qos: 0, retain: false, receivedAtUs: 1767225600000000 },
    "queue_full",
  );
  const parsed = parseCaptureLine(line);
  assert.ok(parsed.ok);
  assert.equal(parsed.entry.dropped, "queue_full");
});

Deno.test("parseCaptureLine() names what is wrong with a bad line", () => {
  const cases: [string, RegExp][] = [
    ["{broken", /broken JSON/],
    ["[1, 2]", /not a JSON object/],
    ['{"payload": "1"}', /missing "topic"/],
    ['{"topic": "a/b"}', /missing "payload"/],
    ['{"topic": "a/+", "payload": "1"}', /wildcards/],
    ['{"topic": "a/b", "payload_b64": "!!"}', /not base64/],
    ['{"topic": "a/b", "payload": "1", "qos": 3}', /qos/],
    ['{"topic": "a/b", "payload": "1", "retain": "yes"}', /retain/],
    ['{"topic": "a/b", "payload": "1", "received_at": "yesterday"}', /received_at/],
  ];
  for (const [line, expected] of cases) {
    const parsed = parseCaptureLine(line);
    assert.ok(!parsed.ok, line);
    assert.match(parsed.error, expected, line);
  }
});

Deno.test("a millisecond receive time is marked inexact, a missing one is null", () => {
  const ms = parseCaptureLine(
    '{"topic":"a/b","payload":"1","received_at":"2026-01-01T00:00:00.123Z"}',
  );
  assert.ok(ms.ok);
  assert.equal(ms.entry.receivedAtUs, 1767225600123000);
  assert.equal(ms.entry.exactTime, false);
  const none = parseCaptureLine('{"topic":"a/b","payload":"1"}');
  assert.ok(none.ok);
  assert.equal(none.entry.receivedAtUs, null);
  assert.equal(none.entry.qos, 0);
  assert.equal(none.entry.retain, false);
});

Deno.test("parseMosquittoLine() splits at the first space and keeps spaces in the payload", () => {
  const parsed = parseMosquittoLine("u/d/feeds/msg hello there world");
  assert.ok(parsed.ok);
  assert.equal(parsed.entry.topic, "u/d/feeds/msg");
  assert.equal(new TextDecoder().decode(parsed.entry.payload), "hello there world");
  assert.equal(parsed.entry.receivedAtUs, null);
  const empty = parseMosquittoLine("u/d/status");
  assert.ok(empty.ok);
  assert.equal(empty.entry.payload.byteLength, 0);
  assert.ok(!parseMosquittoLine(" 21.5").ok);
});

Deno.test("sniffFormat() takes a line starting with { as the capture format", () => {
  assert.equal(sniffFormat('{"topic":"a"}'), "capture");
  assert.equal(sniffFormat("a/b/feeds/c 21.5"), "mosquitto");
});

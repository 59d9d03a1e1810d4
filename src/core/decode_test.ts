import assert from "node:assert/strict";
import { decode, type DecodeOptions, lastReceiveOffsetUs } from "./decode.ts";
import { RECEIVE_STAMP_STEP_US } from "../clock.ts";
import { LANES } from "../db/ingest_lanes.ts";
import { formatTimestamp, parseTimestamp } from "./payload.ts";
import type { Decoded, Inbound } from "./message.ts";
import { compileTopics } from "./topics.ts";

const U = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
const NOW_US = Date.UTC(2026, 0, 1) * 1000;
const opts: DecodeOptions = {
  router: compileTopics(),
  maxPayloadBytes: 1024,
  maxTextLength: 16,
  maxFutureSkewMs: 60_000,
};

function inbound(topic: string, payload: string | Uint8Array, retain = false): Inbound {
  return {
    topic,
    payload: typeof payload === "string" ? new TextEncoder().encode(payload) : payload,
    qos: 1,
    retain,
    receivedAtUs: NOW_US,
  };
}

function reasonOf(d: Decoded): string {
  return d.kind === "reject" ? d.reason : d.kind;
}

Deno.test("decode() reads every accepted feed payload form", () => {
  const cases: [string, { value: number | null; text: string | null; tsUs: number | null }][] = [
    ["23.5", { value: 23.5, text: null, tsUs: null }],
    [" -4 ", { value: -4, text: null, tsUs: null }],
    ["1e3", { value: 1000, text: null, tsUs: null }],
    ['"17"', { value: 17, text: null, tsUs: null }],
    ["true", { value: null, text: "true", tsUs: null }],
    ["ON", { value: null, text: "ON", tsUs: null }],
    ['"open"', { value: null, text: "open", tsUs: null }],
    ['{"value": 5}', { value: 5, text: null, tsUs: null }],
    ['{"value": false}', { value: 0, text: null, tsUs: null }],
    ['{"value": 5, "ts": "2025-12-31T23:59:59.123456Z"}', {
      value: 5,
      text: null,
      tsUs: Date.UTC(2025, 11, 31, 23, 59, 59) * 1000 + 123456,
    }],
    ['{"value": 5, "ts": "2025-12-31T23:59:59+01:00"}', {
      value: 5,
      text: null,
      tsUs: Date.UTC(2025, 11, 31, 22, 59, 59) * 1000,
    }],
    ['{"value": 5, "ts": 1767225599}', { value: 5, text: null, tsUs: 1767225599 * 1e6 }],
    ['{"value": 5, "ts": 1767225599123}', { value: 5, text: null, tsUs: 1767225599123 * 1e3 }],
    ['{"value": 5, "ts": 1767225599123456}', { value: 5, text: null, tsUs: 1767225599123456 }],
  ];
  for (const [payload, expected] of cases) {
    const d = decode(inbound(`${U}/d1/feeds/t`, payload), opts);
    assert.equal(d.kind, "readings", payload);
    if (d.kind !== "readings") continue;
    assert.deepEqual(d.readings, [{ feedKey: "t", ...expected }], payload);
  }
});

Deno.test("decode() rejects bad input with the reason it deserves", () => {
  const nested = "[".repeat(500) + "]".repeat(500);
  const cases: [string, string | Uint8Array, string][] = [
    [`not-a-uuid/d1/feeds/t`, "1", "bad_user_id"],
    [`${U}/d\u0001/feeds/t`, "1", "bad_topic"],
    [`${U}/d1/feeds/${"k".repeat(129)}`, "1", "bad_topic"],
    [`${U}/d1/wrong/t`, "1", "bad_topic"],
    [`${U}/d1/feeds/t`, "   ", "bad_payload"],
    [`${U}/d1/feeds/t`, "NaN", "bad_payload"],
    [`${U}/d1/feeds/t`, "-Infinity", "bad_payload"],
    [`${U}/d1/feeds/t`, "1e999", "bad_payload"],
    [`${U}/d1/feeds/t`, "x".repeat(17), "bad_payload"],
    [`${U}/d1/feeds/t`, "a\u0000b", "bad_payload"],
    [`${U}/d1/feeds/t`, new Uint8Array([0xff, 0xfe, 0x41]), "bad_payload"],
    [`${U}/d1/feeds/t`, "{broken", "bad_payload"],
    [`${U}/d1/feeds/t`, '{"val": 1}', "bad_payload"],
    [`${U}/d1/feeds/t`, '{"value": null}', "bad_payload"],
    [`${U}/d1/feeds/t`, '{"value": [1]}', "bad_payload"],
    [`${U}/d1/feeds/t`, "[1, 2]", "bad_payload"],
    [`${U}/d1/feeds/t`, nested, "bad_payload"],
    [`${U}/d1/feeds/t`, "9".repeat(1025), "too_large"],
    [`${U}/d1/feeds/t`, '{"value": 1, "ts": "yesterday"}', "bad_timestamp"],
    [`${U}/d1/feeds/t`, '{"value": 1, "ts": 12}', "bad_timestamp"],
    [`${U}/d1/feeds/t`, '{"value": 1, "ts": "1970-01-01T00:00:00Z"}', "bad_timestamp"],
    [`${U}/d1/feeds/t`, '{"value": 1, "ts": "2999-01-01T00:00:00Z"}', "future_timestamp"],
    [`${U}/d1/status`, "sleepy", "bad_status"],
    [`${U}/d1/status`, '{"state": "online"}', "bad_status"],
    [`${U}/d1/status`, '{"status": "online", "ts": "2999-01-01T00:00:00Z"}', "future_timestamp"],
    [`${U}/d1/feeds`, "42", "bad_payload"],
    [`${U}/d1/feeds`, "{}", "bad_payload"],
    [`${U}/d1/feeds`, '{"t": "2\'; drop table feeds; --"}', "bad_payload"],
  ];
  for (const [topic, payload, reason] of cases) {
    assert.equal(reasonOf(decode(inbound(topic, payload), opts)), reason, `${topic} ${payload}`);
  }
});

Deno.test("decode() keeps text with SQL metacharacters as a value, not a reject", () => {
  const d = decode(inbound(`${U}/d1/feeds/t`, "O'Brien;--"), opts);
  assert.equal(d.kind, "readings");
  if (d.kind === "readings") assert.equal(d.readings[0].text, "O'Brien;--");
});

Deno.test("decode() lower-cases the user id so lookups match the uuid column", () => {
  const d = decode(inbound(`${U.toUpperCase()}/d1/feeds/t`, "1"), opts);
  assert.equal(d.kind === "readings" && d.userId, U);
});

Deno.test("decode() splits a many-feeds message and keeps the good entries of a mixed one", () => {
  const d = decode(
    inbound(`${U}/d1/feeds`, '{"temp": 21.5, "hum": {"value": 40, "ts": 1767225599}, "bad": NaN}'),
    opts,
  );
  assert.equal(reasonOf(d), "bad_payload"); // invalid JSON as a whole
  const mixed = decode(
    inbound(`${U}/d1/feeds`, '{"temp": 21.5, "hum": {"value": 40, "ts": 1767225599}, "bad": null}'),
    opts,
  );
  assert.equal(mixed.kind, "readings");
  if (mixed.kind !== "readings") return;
  assert.deepEqual(mixed.readings.map((r) => [r.feedKey, r.value, r.tsUs]), [
    ["temp", 21.5, null],
    ["hum", 40, 1767225599e6],
  ]);
  assert.deepEqual(mixed.rejects.map((r) => r.reason), ["bad_payload"]);
  const array = decode(
    inbound(
      `${U}/d1/feeds`,
      '[{"feed": "a", "value": 1}, {"feed": "b", "value": "ON", "ts": 1767225599}]',
    ),
    opts,
  );
  assert.equal(array.kind === "readings" && array.readings.length, 2);
});

Deno.test("decode() reads status words and JSON status", () => {
  for (
    const [payload, status] of [["online", "online"], ["OFFLINE", "offline"], [
      '{"status": "online", "rssi": -60}',
      "online",
    ], ['"offline"', "offline"]]
  ) {
    const d = decode(inbound(`${U}/d1/status`, payload), opts);
    assert.equal(d.kind === "status" && d.status, status, payload);
  }
});

Deno.test("decode() refuses timestamps outside 2000-9999 without throwing, wherever a ts goes", () => {
  const cases: [string, string][] = [
    [`${U}/d1/feeds/t`, '{"value": 1, "ts": 1e19}'],
    [`${U}/d1/feeds/t`, '{"value": 1, "ts": "1e19"}'],
    [`${U}/d1/feeds/t`, '{"value": 1, "ts": 1e300}'],
    [`${U}/d1/feeds/t`, '{"value": 1, "ts": "+275760-09-13T00:00:00Z"}'],
    [`${U}/d1/feeds`, '[{"feed": "a", "value": 1, "ts": 1e19}]'],
    [`${U}/d1/feeds`, '{"a": 1, "ts": 1e19}'],
    [`${U}/d1/status`, '{"status": "online", "ts": 1e19}'],
  ];
  for (const [topic, payload] of cases) {
    assert.equal(reasonOf(decode(inbound(topic, payload), opts)), "bad_timestamp", payload);
  }
});

Deno.test("parseTimestamp() refuses impossible calendar dates and takes a date alone as midnight UTC", () => {
  assert.equal(parseTimestamp("2026-02-30T00:00:00Z"), null);
  assert.equal(parseTimestamp("2026-04-31"), null);
  assert.equal(parseTimestamp("2026-13-01T00:00:00Z"), null);
  assert.equal(parseTimestamp("2026-01-01T24:00:00Z"), null);
  assert.equal(parseTimestamp("2025-02-29T00:00:00Z"), null);
  assert.equal(parseTimestamp("2024-02-29T00:00:00Z"), Date.UTC(2024, 1, 29) * 1000);
  assert.equal(parseTimestamp("2026-01-07"), Date.UTC(2026, 0, 7) * 1000);
  assert.equal(parseTimestamp("2026-01-07T10:00+0530"), Date.UTC(2026, 0, 7, 4, 30) * 1000);
});

Deno.test("formatTimestamp() never throws, whatever the number", () => {
  assert.equal(formatTimestamp(0), "1970-01-01T00:00:00.000Z");
  assert.match(formatTimestamp(1e25), /µs since the epoch/);
  assert.match(formatTimestamp(NaN), /µs since the epoch/);
});

Deno.test("decode() applies a many-feeds object's shared ts to its entries", () => {
  const d = decode(
    inbound(`${U}/d1/feeds`, '{"a": 1, "b": {"value": 2, "ts": 1767225599}, "ts": 1767139200}'),
    opts,
  );
  assert.equal(d.kind, "readings");
  if (d.kind !== "readings") return;
  assert.deepEqual(d.readings.map((r) => [r.feedKey, r.tsUs]), [["a", 1767139200e6], [
    "b",
    1767225599e6,
  ]]);
  assert.equal(
    reasonOf(decode(inbound(`${U}/d1/feeds`, '{"a": 1, "ts": "soon"}'), opts)),
    "bad_timestamp",
  );
});

Deno.test("decode() skips the empty payload that clears a retained message, whatever its RETAIN flag", () => {
  // A broker forwards a clear to a live subscriber with RETAIN 0 (no Retain-As-Published).
  for (const topic of [`${U}/d1/feeds/t`, `${U}/d1/feeds`, `${U}/d1/status`]) {
    for (const retain of [true, false]) {
      assert.deepEqual(
        decode(inbound(topic, "", retain), opts),
        { kind: "skip", reason: "retained_cleared" },
        `${topic} retain=${retain}`,
      );
    }
  }
  // Only no bytes at all is a clear.
  assert.equal(reasonOf(decode(inbound(`${U}/d1/feeds/t`, " "), opts)), "bad_payload");
});

Deno.test("decode() gives each untimed entry of one feed in a many-feeds message its own stamp, in steps of the lane count", () => {
  const d = decode(
    inbound(
      `${U}/d1/feeds`,
      '[{"feed":"f0","value":11},{"feed":"f1","value":1},{"feed":"f0","value":12},' +
        '{"feed":"f0","value":13,"ts":1767225600},{"feed":"f0","value":14}]',
    ),
    opts,
  );
  assert.equal(d.kind, "readings");
  if (d.kind !== "readings") return;
  assert.deepEqual(
    d.readings.map((r) => [r.feedKey, r.value, r.receiveOffsetUs ?? 0]),
    [["f0", 11, 0], ["f1", 1, 0], ["f0", 12, 16], ["f0", 13, 0], ["f0", 14, 32]],
  );
  assert.equal(RECEIVE_STAMP_STEP_US, LANES, "a stamp plus offsets stays in its clock lane");
  assert.equal(lastReceiveOffsetUs(d), 32);
  assert.equal(lastReceiveOffsetUs(decode(inbound(`${U}/d1/feeds`, '{"f0":1,"f1":2}'), opts)), 0);
});

Deno.test("decode() never throws on JSON that shadows Object.prototype, in any place a value is read", () => {
  const hostile = [
    '{"toString":1}',
    '{"valueOf":{}}',
    '{"toString":1,"valueOf":1}',
    '{"constructor":{"prototype":1}}',
    '{"__proto__":{"toString":1}}',
    '{"hasOwnProperty":1,"toString":[]}',
    '[{"toString":1}]',
  ];
  const cases: [string, (h: string) => string, string][] = [
    [`${U}/d1/feeds/t`, (h) => `{"value":1,"ts":${h}}`, "bad_timestamp"],
    [`${U}/d1/feeds/t`, (h) => `{"value":1,"timestamp":${h}}`, "bad_timestamp"],
    [`${U}/d1/feeds/t`, (h) => `{"value":${h}}`, "bad_payload"],
    [`${U}/d1/feeds/t`, (h) => h, "bad_payload"],
    [`${U}/d1/status`, (h) => `{"status":${h}}`, "bad_status"],
    [`${U}/d1/status`, (h) => `{"status":"online","ts":${h}}`, "bad_timestamp"],
    [`${U}/d1/feeds`, (h) => `{"a":1,"ts":${h}}`, "bad_timestamp"],
  ];
  for (const h of hostile) {
    for (const [topic, payload, reason] of cases) {
      const text = payload(h);
      assert.equal(reasonOf(decode(inbound(topic, text), opts)), reason, `${topic} ${text}`);
    }
    // In a many-feeds message the good entries beside it are kept.
    for (
      const text of [
        `[{"feed":${h},"value":1},{"feed":"good","value":2}]`,
        `[{"key":${h},"value":1},{"feed":"good","value":2}]`,
        `[{"feed":"bad","value":1,"ts":${h}},{"feed":"good","value":2}]`,
        `[{"feed":"bad","value":${h}},{"feed":"good","value":2}]`,
        `{"bad":{"value":1,"ts":${h}},"good":2}`,
        `{"bad":${h},"good":2}`,
      ]
    ) {
      const d = decode(inbound(`${U}/d1/feeds`, text), opts);
      assert.equal(d.kind, "readings", text);
      if (d.kind !== "readings") continue;
      assert.deepEqual(d.readings.map((r) => r.feedKey), ["good"], text);
      assert.equal(d.rejects.length, 1, text);
    }
  }
  // A prototype's name as a field that is absent reads as absent, not as its method.
  assert.equal(reasonOf(decode(inbound(`${U}/d1/feeds`, '[{"value":1}]'), opts)), "bad_payload");
  assert.equal(reasonOf(decode(inbound(`${U}/d1/status`, '{"rssi":1}'), opts)), "bad_status");
  const names = decode(inbound(`${U}/d1/feeds`, '{"constructor":1,"__proto__":2}'), opts);
  assert.deepEqual(
    names.kind === "readings" ? names.readings.map((r) => r.feedKey) : names,
    ["constructor", "__proto__"],
  );
});

Deno.test("decode() refuses a status nested deeper than jsonb takes", () => {
  const deep = "[".repeat(40) + "]".repeat(40);
  const d = decode(inbound(`${U}/d1/status`, `{"status": "online", "x": ${deep}}`), opts);
  assert.equal(reasonOf(d), "bad_payload");
});

Deno.test("decode() enforces the topic, JSON depth and many-feeds entry limits", () => {
  const limited: DecodeOptions = {
    ...opts,
    maxTopicLength: 100,
    maxJsonDepth: 4,
    maxBulkEntries: 3,
  };
  const long = decode(inbound(`${U}/d1/feeds/${"k".repeat(100)}`, "1"), limited);
  assert.equal(reasonOf(long), "bad_topic");
  assert.match(long.kind === "reject" ? long.detail : "", /limit is 100/);
  const deep = '{"value": 1, "x": [[[[1]]]]}';
  assert.equal(reasonOf(decode(inbound(`${U}/d1/feeds/t`, deep), limited)), "bad_payload");
  assert.equal(reasonOf(decode(inbound(`${U}/d1/feeds/t`, deep), opts)), "readings");
  assert.equal(
    reasonOf(decode(inbound(`${U}/d1/feeds`, '{"a":1,"b":2,"c":3}'), limited)),
    "readings",
  );
  assert.equal(
    reasonOf(decode(inbound(`${U}/d1/feeds`, '{"a":1,"b":2,"c":3,"d":4}'), limited)),
    "too_large",
  );
  assert.equal(reasonOf(decode(inbound(`${U}/d1/feeds`, "[1,2,3,4]"), limited)), "too_large");
});

import assert from "node:assert/strict";
import { decode, type DecodeOptions } from "../decode.ts";
import type { Decoded, Inbound } from "../message.ts";
import { compileTopics } from "../topics.ts";
import { encodeSparkplug } from "./encode.ts";
import { sparkplugFeedKey } from "./names.ts";
import { DATATYPES as T, encodeWire } from "./schema.ts";
import { parseSparkplugTopic, sparkplugFilters } from "./topic.ts";
import { decodeSparkplugRule, sparkplugRuleOptions } from "./rule.ts";

const U = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
const NOW_MS = Date.UTC(2026, 0, 1);
const opts: DecodeOptions = {
  router: compileTopics(),
  maxPayloadBytes: 65536,
  maxTextLength: 16,
  maxFutureSkewMs: 60_000,
  sparkplug: { userId: U, namespace: "spBv1.0", maxMetrics: 100 },
};

function inbound(topic: string, payload: Uint8Array): Inbound {
  return { topic, payload, qos: 1, retain: false, receivedAtUs: NOW_MS * 1000 };
}

function sparkplugOf(d: Decoded) {
  assert.equal(d.kind, "sparkplug", JSON.stringify(d));
  return (d as Extract<Decoded, { kind: "sparkplug" }>).sparkplug;
}

Deno.test("Sparkplug topics: the six ingested types, node or device, under the namespace", () => {
  assert.deepEqual(parseSparkplugTopic("spBv1.0/G/NDATA/E", "spBv1.0"), {
    type: "NDATA",
    groupId: "G",
    edgeNodeId: "E",
    deviceId: null,
  });
  assert.equal(parseSparkplugTopic("spBv1.0/G/DDATA/E/D", "spBv1.0")?.deviceId, "D");
  for (
    const bad of [
      "spBv1.0/G/NDATA/E/D", // a node type with a device level
      "spBv1.0/G/DDATA/E", // a device type without one
      "spBv1.0/G/NCMD/E", // commands are not ingested
      "spBv1.0/STATE/host",
      "spBv1.0//NDATA/E",
      "spBv1.0x/G/NDATA/E",
    ]
  ) assert.equal(parseSparkplugTopic(bad, "spBv1.0"), null, bad);
  assert.equal(parseSparkplugTopic("site/spBv1.0/G/NBIRTH/E", "site/spBv1.0")?.type, "NBIRTH");
  assert.deepEqual(sparkplugFilters("spBv1.0").length, 6);
});

Deno.test("Sparkplug decode: BIRTH metrics with names, aliases, datatypes and the bdSeq", () => {
  const payload = encodeSparkplug({
    timestamp: NOW_MS - 5000,
    seq: 0,
    metrics: [
      { name: "bdSeq", datatype: T.Int64, value: 7 },
      { name: "Inputs/Temp", alias: 1, datatype: T.Float, value: 21.5, timestamp: NOW_MS - 6000 },
      { name: "Count", alias: 2, datatype: T.Int16, value: -3 },
      { name: "Label", alias: 3, datatype: T.String, value: "run" },
      { name: "Missing", alias: 4, datatype: T.Double, value: null },
    ],
  });
  const sp = sparkplugOf(decode(inbound("spBv1.0/G/NBIRTH/E", payload), opts));
  assert.equal(sp.type, "NBIRTH");
  assert.equal(sp.bdSeq, 7);
  assert.equal(sp.seq, 0);
  assert.equal(sp.tsUs, (NOW_MS - 5000) * 1000);
  assert.equal(sp.metrics.length, 5);
  assert.deepEqual(sp.metrics[1], {
    name: "Inputs/Temp",
    alias: 1,
    datatype: T.Float,
    tsUs: (NOW_MS - 6000) * 1000,
    value: { kind: "float", n: 21.5 },
  });
  assert.deepEqual(sp.metrics[2].value, { kind: "int", bits: -3 >>> 0 });
  assert.deepEqual(sp.metrics[4].value, { kind: "null" });
  assert.deepEqual(sp.rejects, []);
});

Deno.test("Sparkplug decode: what cannot be used is a reject with a reason, never a throw", () => {
  const cases: [string, Uint8Array, string][] = [
    ["spBv1.0/G/NDATA/E", new Uint8Array([0x12, 0xff, 0x01]), "bad_payload"],
    ["spBv1.0/G/NCMD/E", encodeSparkplug({ metrics: [] }), "bad_topic"],
    ["spBv1.0/G/NDATA/" + "e".repeat(130), encodeSparkplug({ metrics: [] }), "bad_topic"],
    [
      "spBv1.0/G/NDATA/E",
      encodeSparkplug({ metrics: Array.from({ length: 101 }, (_, i) => ({ alias: i, value: 1 })) }),
      "too_large",
    ],
    ["spBv1.0/G/NDATA/E", encodeSparkplug({ timestamp: 5, metrics: [] }), "bad_timestamp"],
    [
      "spBv1.0/G/NDATA/E",
      encodeSparkplug({ timestamp: NOW_MS + 3_600_000, metrics: [] }),
      "future_timestamp",
    ],
  ];
  for (const [topic, payload, reason] of cases) {
    const d = decode(inbound(topic, payload), opts);
    assert.equal(d.kind === "reject" ? d.reason : d.kind, reason, topic);
  }
  assert.equal(decode(inbound("spBv1.0/G/NDATA/E", new Uint8Array()), opts).kind, "skip");
  // Without --sparkplug-tenant the namespace is just a topic no template matches.
  const off = { ...opts, sparkplug: undefined };
  const d = decode(inbound("spBv1.0/G/NDATA/E", encodeSparkplug({ metrics: [] })), off);
  assert.equal(d.kind === "reject" && d.reason, "bad_topic");
});

Deno.test("Sparkplug decode: a bad metric is rejected alone; values are checked without datatypes", () => {
  const payload = encodeWire({
    timestamp: NOW_MS,
    metrics: [
      { alias: 1, intValue: 5 },
      { name: "bad\u0001name", intValue: 1 },
      { name: "é".repeat(129), intValue: 1 },
      { alias: 2, timestamp: NOW_MS + 3_600_000, intValue: 1 },
      { alias: 3, stringValue: "far too long for the limit" },
      { alias: 4, doubleValue: Number.NaN },
      { alias: 5, datasetValue: new Uint8Array([1, 2]) },
      { datatype: 3, intValue: 1 },
      { alias: { low: 0, high: 0x7fffffff, unsigned: true }, intValue: 1 },
    ],
  });
  const sp = sparkplugOf(decode(inbound("spBv1.0/G/DDATA/E/D", payload), opts));
  assert.deepEqual(sp.metrics.map((m) => m.alias), [1, 3, 4, 5]);
  assert.deepEqual(sp.metrics.map((m) => m.value.kind), [
    "int",
    "invalid",
    "invalid",
    "unsupported",
  ]);
  assert.deepEqual(sp.rejects.map((r) => r.reason), [
    "bad_payload",
    "bad_payload",
    "future_timestamp",
    "bad_payload",
    "bad_payload",
  ]);
});

Deno.test("Sparkplug names: feed keys follow the device code, / made . and + # made _", () => {
  assert.equal(sparkplugFeedKey("G.E.D", "Inputs/Motor #1"), "G.E.D.Inputs.Motor _1");
  assert.equal(sparkplugFeedKey("G.E", "x".repeat(130)), null);
  assert.equal(sparkplugFeedKey("G.E", "tab\u0001"), null);
  assert.equal(sparkplugFeedKey("G.E", "__proto__"), "G.E.__proto__");
});

Deno.test("a mapping rule of format sparkplug decodes as the switch does, its options defaulted", () => {
  const options = sparkplugRuleOptions.parse(undefined);
  assert.deepEqual(options, { namespace: "spBv1.0", max_metrics: 10_000 });
  const payload = encodeSparkplug({ timestamp: NOW_MS, metrics: [{ alias: 1, value: 2 }] });
  const d = decodeSparkplugRule(payload, {
    topic: "spBv1.0/G/DDATA/E/D",
    receivedAtUs: NOW_MS * 1000,
    userId: U,
    limits: opts,
    options,
  });
  assert.deepEqual(d, decode(inbound("spBv1.0/G/DDATA/E/D", payload), opts));
  assert.throws(() => sparkplugRuleOptions.parse({ namespace: "a/#" }));
});

import assert from "node:assert/strict";
import { decode, type DecodeOptions } from "../../core/decode.ts";
import type { Decoded, DecodedMessage } from "../../core/message.ts";
import { encodeSparkplug, type MetricSpec } from "../../core/sparkplug/encode.ts";
import { DATATYPES as T, encodeWire } from "../../core/sparkplug/schema.ts";
import { compileTopics } from "../../core/topics.ts";
import { resolveSparkplug, type SparkplugState } from "./sparkplug_resolve.ts";

const U = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
const NOW_MS = Date.UTC(2026, 0, 1);
const opts: DecodeOptions = {
  router: compileTopics(),
  maxPayloadBytes: 65536,
  maxTextLength: 255,
  maxFutureSkewMs: 60_000,
  sparkplug: { userId: U, namespace: "spBv1.0", maxMetrics: 100_000 },
};
let clock = NOW_MS * 1000;

function msg(topic: string, metrics: MetricSpec[], extra: { seq?: number } = {}): DecodedMessage {
  const inbound = {
    topic: `spBv1.0/${topic}`,
    payload: encodeSparkplug({ timestamp: NOW_MS, metrics, ...extra }),
    qos: 1 as const,
    retain: false,
    receivedAtUs: clock++,
  };
  return { inbound, decoded: decode(inbound, opts) };
}

const empty = (): SparkplugState => ({ births: new Map(), devicesOf: new Map() });
type Readings = Extract<Decoded, { kind: "readings" }>;
const readings = (d: Decoded) => {
  assert.equal(d.kind, "readings", JSON.stringify(d));
  return d as Readings;
};

const BIRTH: MetricSpec[] = [
  { name: "bdSeq", datatype: T.Int64, value: 3 },
  { name: "Node Control/Rebirth", datatype: T.Boolean, value: false },
  { name: "temp", alias: 1, datatype: T.Float, value: 20 },
  { name: "Inputs/level", alias: 2, datatype: T.Int8, value: -5 },
  { name: "table", alias: 3, datatype: T.DataSet },
];

/** A DATA as it comes off the wire: metrics by alias, no datatype (left to the BIRTH). */
function data(topic: string, metrics: Record<string, unknown>[]): DecodedMessage {
  const inbound = {
    topic: `spBv1.0/${topic}`,
    payload: encodeWire({ timestamp: NOW_MS, metrics }),
    qos: 1 as const,
    retain: false,
    receivedAtUs: clock++,
  };
  return { inbound, decoded: decode(inbound, opts) };
}

Deno.test("resolve: a DATA after its BIRTH in one batch reads by alias and by the BIRTH's datatype", () => {
  // -7 comes as its 32 bits; the BIRTH says Int8.
  const resolved = resolveSparkplug([
    msg("G/NBIRTH/E", BIRTH),
    data("G/NDATA/E", [{ alias: 2, intValue: -7 >>> 0 }, { alias: 1, floatValue: 21.25 }]),
  ], empty());
  const birth = readings(resolved.messages[0].decoded);
  assert.deepEqual(birth.readings.map((r) => [r.feedKey, r.value]), [
    ["G.E.temp", 20],
    ["G.E.Inputs.level", -5],
  ]);
  assert.equal(birth.rejects.length, 0, "a declared DataSet without a value is no reject");
  const d = readings(resolved.messages[1].decoded);
  assert.deepEqual(d.readings.map((r) => [r.feedKey, r.value]), [
    ["G.E.Inputs.level", -7],
    ["G.E.temp", 21.25],
  ]);
  assert.equal(resolved.births.length, 1);
  assert.equal(resolved.births[0].bdSeq, 3);
  assert.deepEqual(resolved.registrations[0].feedKeys, ["G.E.temp", "G.E.Inputs.level"]);
  assert.deepEqual(resolved.statuses.map((s) => [s.deviceCode, s.status]), [["G.E", "online"]]);
});

Deno.test("resolve: an alias no BIRTH declares is sparkplug_unknown_alias; known ones still read", () => {
  const state = empty(); // the batch's state: the next batch sees this one's BIRTH
  resolveSparkplug([msg("G/DBIRTH/E/D", BIRTH)], state);
  const resolved = resolveSparkplug([
    data("G/DDATA/E/D", [{ alias: 1, floatValue: 1 }, { alias: 99, floatValue: 2 }]),
    data("G/DDATA/E/OTHER", [{ alias: 1, floatValue: 1 }]),
  ], state);
  const partial = readings(resolved.messages[0].decoded);
  assert.equal(partial.readings.length, 1);
  assert.deepEqual(partial.rejects.map((r) => r.reason), ["sparkplug_unknown_alias"]);
  assert.deepEqual(resolved.messages[1].decoded, {
    kind: "reject",
    reason: "sparkplug_unknown_alias",
    detail: "metric alias 1: no recorded DBIRTH declares it",
  });
});

Deno.test("resolve: NDEATH sets offline only with the last NBIRTH's bdSeq, for its devices too", () => {
  const state = empty();
  resolveSparkplug([msg("G/NBIRTH/E", BIRTH), msg("G/DBIRTH/E/D1", BIRTH.slice(2))], state);
  const stale = resolveSparkplug([
    msg("G/NDEATH/E", [{ name: "bdSeq", datatype: T.Int64, value: 2 }]),
  ], state);
  assert.deepEqual(stale.messages[0].decoded, { kind: "skip", reason: "sparkplug_stale_death" });
  assert.equal(stale.statuses.length, 0);
  const death = resolveSparkplug([
    msg("G/NDEATH/E", [{ name: "bdSeq", datatype: T.Int64, value: 3 }]),
  ], state);
  assert.deepEqual(death.statuses.map((s) => [s.deviceCode, s.status, s.quiet ?? false]), [
    ["G.E", "offline", false],
    ["G.E.D1", "offline", true],
  ]);
  const ddeath = resolveSparkplug([msg("G/DDEATH/E/D1", [], { seq: 9 })], state);
  assert.deepEqual(ddeath.statuses.map((s) => [s.deviceCode, s.status]), [["G.E.D1", "offline"]]);
});

Deno.test("resolve: an older BIRTH (a replay) stores its readings but leaves newer state alone", () => {
  const old = msg("G/NBIRTH/E", BIRTH);
  const state = empty();
  resolveSparkplug(
    [msg("G/NBIRTH/E", [{ name: "temp", alias: 7, datatype: T.Double, value: 1 }])],
    state,
  );
  const replayed = resolveSparkplug([old], state);
  assert.equal(replayed.births.length, 0);
  assert.equal(readings(replayed.messages[0].decoded).readings.length, 2);
  assert.equal([...state.births.values()][0].table!.byAlias.get(7)?.name, "temp");
});

Deno.test("resolve: datatypes read as the specification says; others are unsupported", () => {
  const metrics: MetricSpec[] = [
    { name: "u32", datatype: T.UInt32, value: 4_000_000_000 },
    { name: "i32", datatype: T.Int32, value: -2 },
    { name: "i64", datatype: T.Int64, value: -9_000_000_000 },
    { name: "u64", datatype: T.UInt64, value: 2 ** 40 },
    { name: "when", datatype: T.DateTime, value: NOW_MS },
    { name: "flag", datatype: T.Boolean, value: true },
    { name: "id", datatype: T.UUID, value: "6f1c2d3e" },
    { name: "ds", datatype: T.DataSet, value: "x" },
    { name: "arr", datatype: 22, value: "x" },
    { name: "Device Control/Reboot", datatype: T.Boolean, value: true },
  ];
  const d = readings(resolveSparkplug([msg("G/DBIRTH/E/D", metrics)], empty()).messages[0].decoded);
  assert.deepEqual(
    d.readings.map((r) => [r.feedKey.slice(6), r.value ?? r.text]),
    [["u32", 4e9], ["i32", -2], ["i64", -9e9], ["u64", 2 ** 40], ["when", NOW_MS], ["flag", 1], [
      "id",
      "6f1c2d3e",
    ]],
  );
  assert.deepEqual(d.rejects.map((r) => r.reason), [
    "sparkplug_unsupported_type",
    "sparkplug_unsupported_type",
  ]);
  assert.match(d.rejects[0].detail, /DataSet values are not supported/);
});

Deno.test("resolve: a BIRTH that declares a name or an alias twice keeps the first", () => {
  const resolved = resolveSparkplug([msg("G/NBIRTH/E", [
    { name: "a", alias: 1, datatype: T.Double, value: 1 },
    { name: "a", alias: 2, datatype: T.Double, value: 2 },
    { name: "b", alias: 1, datatype: T.Double, value: 3 },
  ])], empty());
  assert.deepEqual(resolved.births[0].defs.map((d) => d.name), ["a"]);
  const d = readings(resolved.messages[0].decoded);
  assert.equal(d.rejects.filter((r) => r.reason === "bad_payload").length, 2);
});

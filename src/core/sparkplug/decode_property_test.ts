/**
 * Hostile Sparkplug B input, generated (issue 22): whatever the bytes, `decodeSparkplug`
 * (unguarded: not through `neverThrowing`) and the resolution against BIRTH state answer
 * with messages and rejects of known reasons, and never throw: random protobuf bytes,
 * valid payloads cut short, aliases up to 2^64, names that are prototype keys, 10,000
 * metrics in one payload. Seeded (FEEDLINE_PROPERTY_SEED).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { type Inbound, REJECT_REASONS, SKIP_REASONS } from "../message.ts";
import { resolveSparkplug, type SparkplugState } from "../../ingest/write/sparkplug_resolve.ts";
import { decodeSparkplug, type SparkplugLimits, type SparkplugRoute } from "./decode.ts";
import { encodeSparkplug } from "./encode.ts";
import { encodeWire, type WireMetric } from "./schema.ts";

const SEED = Number(Deno.env.get("FEEDLINE_PROPERTY_SEED") || 1010);
const U = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
const NOW_MS = Date.UTC(2026, 0, 1);
const ROUTE: SparkplugRoute = { userId: U, namespace: "spBv1.0", maxMetrics: 10_000 };
const LIMITS: SparkplugLimits = {
  maxPayloadBytes: 1 << 20,
  maxTextLength: 255,
  maxFutureSkewMs: 60_000,
};
const REASONS = new Set<string>(REJECT_REASONS);
const SKIPS = new Set<string>(SKIP_REASONS);
let clock = NOW_MS * 1000;

const TYPES = ["NBIRTH", "DBIRTH", "NDATA", "DDATA", "NDEATH", "DDEATH"] as const;
const topicOf = (type: string) => `spBv1.0/G/${type}/E${type.startsWith("D") ? "/D" : ""}`;
const inbound = (topic: string, payload: Uint8Array): Inbound => ({
  topic,
  payload,
  qos: 1,
  retain: false,
  receivedAtUs: clock++,
});

/** Names a hostile publisher would pick: prototype keys, separators, control characters. */
const nameArb = fc.oneof(
  fc.constantFrom("__proto__", "constructor", "toString", "hasOwnProperty", "bdSeq", "a/b/c", "#+"),
  fc.constantFrom("Node Control/Rebirth", "", "x".repeat(2000), "tab\u0000nul"),
  fc.string({ maxLength: 40 }),
);
const longArb = fc.record({
  low: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  high: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  unsigned: fc.constant(true),
});
const metricArb: fc.Arbitrary<WireMetric> = fc.record({
  name: nameArb,
  alias: fc.oneof(fc.integer({ min: 0, max: 20 }), longArb),
  timestamp: fc.oneof(fc.constant(NOW_MS), fc.integer({ min: 0, max: 2 ** 52 }), longArb),
  datatype: fc.integer({ min: 0, max: 40 }),
  isNull: fc.boolean(),
  intValue: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  longValue: longArb,
  doubleValue: fc.double(),
  booleanValue: fc.boolean(),
  stringValue: fc.string({ unit: "binary", maxLength: 300 }),
  datasetValue: fc.uint8Array({ maxLength: 20 }),
}, { requiredKeys: [] }).map((m) => {
  // One value field at most, as the oneof allows on the wire.
  const values = [
    "intValue",
    "longValue",
    "doubleValue",
    "booleanValue",
    "stringValue",
    "datasetValue",
  ]
    .filter((k) => k in m);
  for (const k of values.slice(1)) delete (m as Record<string, unknown>)[k];
  return m;
});
const payloadArb = fc.record({
  type: fc.constantFrom(...TYPES),
  timestamp: fc.oneof(fc.constant(NOW_MS), longArb),
  seq: fc.oneof(fc.integer({ min: 0, max: 300 }), longArb),
  metrics: fc.array(metricArb, { maxLength: 30 }),
});

/** Decodes and resolves a batch; asserts every answer is a known kind and reason. */
function decodeAndResolve(messages: Inbound[], state: SparkplugState): void {
  const batch = messages.map((m) => ({ inbound: m, decoded: decodeSparkplug(m, ROUTE, LIMITS) }));
  for (const { decoded } of batch) {
    if (decoded.kind === "reject") assert.ok(REASONS.has(decoded.reason), decoded.reason);
    else if (decoded.kind === "skip") assert.ok(SKIPS.has(decoded.reason));
    else assert.equal(decoded.kind, "sparkplug");
  }
  const resolved = resolveSparkplug(batch, state);
  for (const { decoded } of resolved.messages) {
    assert.notEqual(decoded.kind, "sparkplug", "every Sparkplug message is resolved");
    if (decoded.kind === "readings") {
      for (const r of decoded.rejects) assert.ok(REASONS.has(r.reason), r.reason);
      for (const r of decoded.readings) {
        assert.ok(r.value === null ? typeof r.text === "string" : Number.isFinite(r.value));
        assert.ok(r.feedKey.length <= 128);
      }
    }
  }
}

const emptyState = (): SparkplugState => ({ births: new Map(), devicesOf: new Map() });

Deno.test("property: random bytes on every Sparkplug topic never throw out of decode or resolve", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.constantFrom(...TYPES), fc.uint8Array({ maxLength: 400 })), {
        maxLength: 20,
      }),
      (list) => {
        decodeAndResolve(list.map(([type, bytes]) => inbound(topicOf(type), bytes)), emptyState());
      },
    ),
    { seed: SEED, numRuns: 300 },
  );
});

Deno.test("property: hostile payloads, whole and cut short, in any order, never throw", () => {
  const state = emptyState(); // carried over: BIRTHs of one run are the next run's state
  fc.assert(
    fc.property(fc.array(fc.tuple(payloadArb, fc.nat()), { maxLength: 12 }), (list) => {
      decodeAndResolve(
        list.flatMap(([p, cut]) => {
          const bytes = encodeWire({ timestamp: p.timestamp, seq: p.seq, metrics: p.metrics });
          return [
            inbound(topicOf(p.type), bytes),
            inbound(topicOf(p.type), bytes.slice(0, cut % (bytes.byteLength + 1))),
          ];
        }),
        state,
      );
    }),
    { seed: SEED, numRuns: 200 },
  );
});

Deno.test("10,000 metrics in one DDATA decode by alias; one more is too_large", () => {
  const n = 10_000;
  const birth = encodeSparkplug({
    timestamp: NOW_MS,
    metrics: Array.from({ length: n }, (_, i) => ({ name: `m${i}`, alias: i, datatype: 10 })),
  });
  const data = (count: number) =>
    encodeSparkplug({
      timestamp: NOW_MS,
      metrics: Array.from({ length: count }, (_, i) => ({ alias: i % n, value: i })),
    });
  const batch = [inbound(topicOf("DBIRTH"), birth), inbound(topicOf("DDATA"), data(n))].map((
    m,
  ) => ({
    inbound: m,
    decoded: decodeSparkplug(m, ROUTE, LIMITS),
  }));
  const resolved = resolveSparkplug(batch, emptyState());
  const d = resolved.messages[1].decoded;
  assert.equal(d.kind === "readings" && d.readings.length, n);
  const over = decodeSparkplug(inbound(topicOf("DDATA"), data(n + 1)), ROUTE, LIMITS);
  assert.equal(over.kind === "reject" && over.reason, "too_large");
});

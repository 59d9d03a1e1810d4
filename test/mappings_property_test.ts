/**
 * Hostile input, generated (issue 22): decoding by mappings never throws and never
 * answers `internal_error`, whatever the topic and payload (truncated or random CBOR,
 * deep JSON, huge arrays, keys named like Object.prototype's own); and through the real
 * processor and PostgreSQL, hostile mapped messages never block a batch: every valid
 * reading beside them is stored and every message is accounted for once. Seeded
 * (FEEDLINE_PROPERTY_SEED); fast-check prints the counterexample on failure.
 */
import assert from "node:assert/strict";
import { encode } from "cborg";
import fc from "fast-check";
import { nowUs } from "../src/clock.ts";
import { decode, type DecodeOptions } from "../src/core/decode.ts";
import type { Decoded, DecodedMessage } from "../src/core/message.ts";
import { isValidName } from "../src/core/payload.ts";
import { compileTopics } from "../src/core/topics.ts";
import { compileMappings } from "../src/core/mappings/decode_mapped.ts";
import { intArrayLiteral } from "../src/ingest/pg_array.ts";
import { processBatch } from "../src/ingest/processor.ts";
import { TenantCache } from "../src/ingest/tenant_cache.ts";
import { withTestDatabase } from "./support/db.ts";
import { PROPERTY_SEED } from "./support/poison.ts";

const SEED = PROPERTY_SEED;

const RULES = {
  tenant: { alias: "fleet" },
  rules: [
    { name: "json", topic: "j/{device}", readings: "all", text: ["state"], time: "ts" },
    {
      name: "picked",
      topic: "p/{device}/{part}",
      root: "params",
      when: { method: "Notify" },
      readings: ["a.b", "c[0]", "constructor", "__proto__.x"],
      feed_key: "{device}.{part}.{path}",
    },
    { name: "cbor", topic: "c/{user_id}/{device}", format: "cbor", readings: "all", time: "t" },
    { name: "raw", topic: "r/{device}", format: "raw", readings: { v: "$" } },
    { name: "status", topic: "s/{device}", status: { path: "state" } },
    { name: "cbor status", topic: "cs/{device}", format: "cbor", status: { path: "state" } },
  ],
};

const MAPPINGS = compileMappings(RULES, "property.json");
const OPTS: DecodeOptions = {
  router: compileTopics(),
  mappings: MAPPINGS,
  maxPayloadBytes: 65536,
  maxTextLength: 255,
  maxFutureSkewMs: 300_000,
  maxBulkEntries: 1000,
};
const NOW_US = Date.UTC(2026, 0, 15) * 1000;

const PROTO_KEYS = [
  "__proto__",
  "constructor",
  "toString",
  "valueOf",
  "hasOwnProperty",
  "prototype",
];

/** Values a payload may hold, hostile ones included. */
const leaf = fc.oneof(
  fc.double(),
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.string({ maxLength: 20 }),
  fc.constantFrom("ON", "online", "offline", "", " ", "1e999", "NaN", "\u0000"),
);
const key = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.constantFrom(...PROTO_KEYS, "a", "b", "c", "ts", "t"),
);
const tree = fc.letrec<{ node: unknown }>((tie) => ({
  node: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    leaf,
    fc.array(tie("node"), { maxLength: 5 }),
    fc.dictionary(key, tie("node"), { maxKeys: 6 }),
  ),
})).node;

/** Payload bytes, in every way a device (or an attacker) could get them wrong. */
const payload: fc.Arbitrary<Uint8Array> = fc.oneof(
  tree.map((t) => new TextEncoder().encode(JSON.stringify(t) ?? "")),
  tree.map((t) => encode(t as never)),
  // Truncated CBOR: a prefix of a valid document.
  fc.tuple(tree, fc.nat()).map(([t, n]) => {
    const bytes = encode(t as never);
    return bytes.slice(0, n % (bytes.length + 1));
  }),
  fc.uint8Array({ maxLength: 200 }),
  fc.constantFrom(
    new TextEncoder().encode("[".repeat(5000)),
    new TextEncoder().encode(`{"a":${"[".repeat(100)}1${"]".repeat(100)}}`),
    new TextEncoder().encode(`[${"1,".repeat(20_000)}1]`),
    new Uint8Array([0x9b, 0, 0, 0, 1, 0, 0, 0, 0]), // CBOR: an array of 2^32 entries, no body
    new Uint8Array(60_000).fill(0x81), // CBOR: 60,000 nested arrays
    encode({ params: { a: { b: 1 }, c: [2], constructor: 3 }, method: "Notify" }),
    new TextEncoder().encode('{"method":"Notify","params":{"a":{"b":"x"},"c":[[1]]}}'),
    new TextEncoder().encode('{"__proto__":{"x":1},"constructor":{"prototype":2},"ts":"soon"}'),
  ),
);

const topicOf = fc.tuple(
  fc.constantFrom("j", "p", "p", "p", "c", "r", "s", "cs", "x", "$SYS", ""),
  fc.array(
    fc.oneof(
      fc.constantFrom("dev", "", "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f", "a+b", "x".repeat(200)),
      fc.string({ maxLength: 10 }),
    ),
    { minLength: 1, maxLength: 3 },
  ),
).map(([head, rest]) => [head, ...rest].join("/"));

/** A detail that shows a value of Object.prototype was read as if it were payload. */
const LEAKED = /\bfunction\b|\[object /;

function problem(d: Decoded): string | null {
  if (d.kind === "reject") {
    return d.reason === "internal_error" || LEAKED.test(d.detail) ? d.detail : null;
  }
  if (d.kind === "skip") return null;
  if (d.tenantAlias === undefined && !/^[0-9a-f-]{36}$/.test(d.userId)) return `user ${d.userId}`;
  if (!isValidName(d.deviceCode)) return `device ${d.deviceCode}`;
  if (d.kind === "status" || d.kind === "sparkplug") return null;
  if (d.readings.length + d.rejects.length === 0) return "readings without readings or rejects";
  for (const r of d.readings) {
    if (!isValidName(r.feedKey)) return `feed key ${r.feedKey}`;
    if ((r.value === null) === (r.text === null)) return "a value xor a text";
    if (r.value !== null && !Number.isFinite(r.value)) return `value ${r.value}`;
  }
  for (const r of d.rejects) {
    if (r.reason === "internal_error" || LEAKED.test(r.detail)) return r.detail;
  }
  return null;
}

Deno.test("property: decoding by mappings never throws and answers every hostile message with a known outcome", () => {
  fc.assert(
    fc.property(topicOf, payload, fc.boolean(), (topic, bytes, retain) => {
      const d = decode(
        { topic, payload: bytes, qos: 1, retain, receivedAtUs: NOW_US },
        OPTS,
      );
      const wrong = problem(d);
      assert.equal(wrong, null, `${topic}: ${wrong}`);
    }),
    { seed: SEED, numRuns: 3000 },
  );
});

/** A valid reading of the registered device `good`, at a time of its own. */
let validClock = Date.UTC(2025, 0, 1);
const valid = fc.tuple(fc.integer({ min: -1000, max: 1000 }), fc.boolean()).map(([v, asCbor]) => {
  const ts = validClock += 1000;
  return asCbor ? { topic: `c/${USER}/good`, payload: encode({ temp: v, t: ts }), value: v, ts } : {
    topic: "j/good",
    payload: new TextEncoder().encode(JSON.stringify({ temp: v, ts })),
    value: v,
    ts,
  };
});
const USER = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";

Deno.test("property: hostile mapped messages never block a batch; valid ones are stored, each message counted once", () =>
  withTestDatabase(async (sql) => {
    await sql`insert into users (id) values (${USER})`;
    await sql`insert into tenant_aliases (alias, user_id) values ('fleet', ${USER})`;
    await sql`insert into devices (user_id, code) values (${USER}, 'good')`;
    await sql`insert into feeds (user_id, key) values (${USER}, 'good.temp')`;
    const tenantCache = new TenantCache({ ttlMs: 60_000 });
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(topicOf, payload, fc.boolean()), { maxLength: 30 }),
        fc.array(valid, { minLength: 1, maxLength: 8 }),
        async (hostile, good) => {
          const messages = [
            ...hostile.map(([topic, bytes, retain]) => ({ topic, payload: bytes, retain })),
            ...good.map((g) => ({ topic: g.topic, payload: g.payload, retain: false })),
          ];
          // Interleaved, so valid messages sit between hostile ones.
          messages.sort((a, b) => (a.payload.length % 7) - (b.payload.length % 7));
          const batch: DecodedMessage[] = messages.map((m) => {
            const inbound = { ...m, qos: 1 as const, receivedAtUs: nowUs() };
            return { inbound, decoded: decode(inbound, OPTS) };
          });
          const result = await processBatch(sql, batch, { tenantCache, requireDevice: true });
          const { stored, rejected, skipped } = result.outcomes;
          assert.equal(stored + rejected + skipped, batch.length);
          const rows = await sql`
            select count(*)::int as n from feed_values v join feeds f on f.id = v.feed_id
            where f.key = 'good.temp'
              and (extract(epoch from v.created_at) * 1000)::int8 = any(${
            intArrayLiteral(good.map((g) => g.ts))
          }::int8[])`;
          assert.equal(rows[0].n, good.length, "every valid reading is stored");
          const [{ n }] = await sql`
            select count(distinct received_at)::int as n from ingest_rejects
            where (extract(epoch from received_at) * 1000000)::int8 = any(${
            intArrayLiteral(batch.map((p) => p.inbound.receivedAtUs))
          }::int8[])`;
          assert.ok(rejected <= n && n <= rejected + stored, `${n} messages with reject rows`);
        },
      ),
      { seed: SEED, numRuns: 25 },
    );
  }));

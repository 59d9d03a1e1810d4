/**
 * Hostile Sparkplug B traffic through the real processor and PostgreSQL (issue 22): batches
 * of BIRTHs and DATA by alias, mixed with random protobuf bytes, payloads cut short, aliases
 * never born or beyond 2^53 and metric names that are prototype keys, all commit: every
 * reading of a valid DATA is stored, and every message is accounted for once, the rejected
 * ones with their rows in ingest_rejects. A 10,000-metric DBIRTH and DDATA go through in one
 * batch. Seeded (FEEDLINE_PROPERTY_SEED).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import type postgres from "postgres";
import { decode, type DecodeOptions } from "../src/core/decode.ts";
import type { DecodedMessage } from "../src/core/message.ts";
import { encodeSparkplug, type MetricSpec } from "../src/core/sparkplug/encode.ts";
import { DATATYPES as T, encodeWire } from "../src/core/sparkplug/schema.ts";
import { compileTopics } from "../src/core/topics.ts";
import { DeviceCache } from "../src/ingest/device_cache.ts";
import { FeedCache } from "../src/ingest/feed_cache.ts";
import { processBatch, type ProcessorOptions } from "../src/ingest/processor.ts";
import { SparkplugCache } from "../src/ingest/write/sparkplug_state.ts";
import { withTestDatabase } from "./support/db.ts";
import { assertProperty } from "./support/poison.ts";

const NOW_MS = Date.now() - 3_600_000;
let clock = NOW_MS * 1000;

function options(user: string): { decode: DecodeOptions; processor: ProcessorOptions } {
  return {
    decode: {
      router: compileTopics(),
      maxPayloadBytes: 1 << 20,
      maxTextLength: 255,
      maxFutureSkewMs: 300_000,
      sparkplug: { userId: user, namespace: "spBv1.0", maxMetrics: 10_000 },
    },
    processor: {
      requireDevice: true,
      feedCache: new FeedCache(),
      deviceCache: new DeviceCache(),
      sparkplug: { cache: new SparkplugCache(), register: true },
    },
  };
}

function message(topic: string, payload: Uint8Array, decodeOpts: DecodeOptions): DecodedMessage {
  const inbound = { topic, payload, qos: 1 as const, retain: false, receivedAtUs: clock++ };
  return { inbound, decoded: decode(inbound, decodeOpts) };
}

const NAMES = ["__proto__", "constructor", "toString", "hasOwnProperty", "valueOf", "a/b", "m"];
const hostileArb = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map((b) => ({ kind: "bytes" as const, b })),
  fc.record({
    cut: fc.nat(),
    // Never born (the BIRTH declares 0–6), or beyond 2^53.
    alias: fc.oneof(fc.integer({ min: 7, max: 50 }), fc.constant(2 ** 60)),
  }).map((x) => ({ kind: "cut" as const, ...x })),
);

/** How many readings the database holds for the feeds of `group`. */
async function storedOf(sql: postgres.Sql, group: string): Promise<number> {
  const [{ n }] = await sql`
    select count(*)::int as n from feed_values v join feeds f on f.id = v.feed_id
    where f.key like ${group + ".%"}`;
  return n;
}

Deno.test("property: hostile Sparkplug messages never block a batch; every valid reading is stored", () =>
  withTestDatabase(async (sql) => {
    const user = crypto.randomUUID();
    await sql`insert into users (id) values (${user})`;
    const { decode: decodeOpts, processor } = options(user);
    let run = 0;
    await assertProperty(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat({ max: 3 }), fc.integer({ min: -1000, max: 1000 })), {
          minLength: 1,
          maxLength: 12,
        }),
        fc.array(hostileArb, { maxLength: 10 }),
        fc.nat(),
        async (datas, hostile, shuffle) => {
          const group = `g${run++}`;
          const topic = (type: string) => `spBv1.0/${group}/${type}/E/D`;
          const birth: MetricSpec[] = NAMES.map((name, i) => ({
            name,
            alias: i,
            datatype: T.Int32,
          }));
          const valid = datas.map(([alias, value], k) =>
            message(
              topic("DDATA"),
              encodeSparkplug({
                timestamp: NOW_MS + run * 1000 + k,
                metrics: [{ alias, value, datatype: T.Int32 }],
              }),
              decodeOpts,
            )
          );
          const bad = hostile.map((h) => {
            if (h.kind === "bytes") return message(topic("DDATA"), h.b, decodeOpts);
            const bytes = encodeWire({
              timestamp: NOW_MS,
              // A prototype key the BIRTH declares as Int32, sent a text: bad_payload.
              metrics: [{ alias: h.alias, intValue: 1 }, { name: "__proto__", stringValue: "x" }],
            });
            return message(topic("DDATA"), bytes.slice(0, h.cut % (bytes.length + 1)), decodeOpts);
          });
          // The BIRTH first; valid and hostile messages interleaved after it.
          const rest = [...valid, ...bad];
          for (let i = rest.length - 1; i > 0; i--) {
            const j = (shuffle + i * 7919) % (i + 1);
            [rest[i], rest[j]] = [rest[j], rest[i]];
          }
          const batch = [
            message(
              topic("DBIRTH"),
              encodeSparkplug({ timestamp: NOW_MS, metrics: birth }),
              decodeOpts,
            ),
            ...rest,
          ];
          const result = await processBatch(sql, batch, processor);
          const { stored, rejected, skipped } = result.outcomes;
          assert.equal(stored + rejected + skipped, batch.length, "every message accounted once");
          assert.equal(await storedOf(sql, group), valid.length, "every valid DATA reading stored");
          const [{ n }] = await sql`
            select count(distinct received_at)::int as n from ingest_rejects
            where topic like ${`spBv1.0/${group}/%`}`;
          assert.ok(n >= rejected, `${rejected} rejected messages but ${n} with rows`);
        },
      ),
      { numRuns: 25 },
    );
  }));

Deno.test("a DBIRTH and a DDATA of 10,000 metrics each are stored in one batch", () =>
  withTestDatabase(async (sql) => {
    const user = crypto.randomUUID();
    await sql`insert into users (id) values (${user})`;
    const { decode: decodeOpts, processor } = options(user);
    const n = 10_000;
    const birth = encodeSparkplug({
      timestamp: NOW_MS,
      metrics: Array.from(
        { length: n },
        (_, i) => ({ name: `m${i}`, alias: i, datatype: T.Double }),
      ),
    });
    const data = encodeSparkplug({
      timestamp: NOW_MS + 1,
      metrics: Array.from({ length: n }, (_, i) => ({ alias: i, value: i / 4 })),
    });
    const result = await processBatch(sql, [
      message("spBv1.0/big/DBIRTH/E/D", birth, decodeOpts),
      message("spBv1.0/big/DDATA/E/D", data, decodeOpts),
    ], processor);
    assert.deepEqual(result.outcomes, { stored: 2, rejected: 0, skipped: 0 });
    assert.equal(result.stored, n);
    const [{ metrics }] = await sql`select count(*)::int as metrics from sparkplug_metrics`;
    assert.equal(metrics, n);
  }));

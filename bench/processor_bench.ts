/**
 * Micro-benchmark of batch building and writing: `processBatch` on 5,000 decoded
 * messages over 5,000 feeds, against a real PostgreSQL (TEST_DATABASE_URL) or the
 * embedded one. The feed cache is warm, as in steady state. `deno bench -A bench/`.
 */
import { decode, type DecodeOptions } from "../src/core/decode.ts";
import { FeedCache } from "../src/ingest/feed_cache.ts";
import type { DecodedMessage } from "../src/core/message.ts";
import { processBatch } from "../src/ingest/processor.ts";
import { compileTopics } from "../src/core/topics.ts";
import { createTestDatabase } from "../test/support/db.ts";
import { buildFleet, registerFleet } from "./fleet.ts";

const db = await createTestDatabase();
const fleet = buildFleet({ users: 100, devices: 10, feeds: 5 });
await registerFleet(db.sql, fleet);
const opts: DecodeOptions = {
  router: compileTopics(),
  maxPayloadBytes: 65536,
  maxTextLength: 255,
  maxFutureSkewMs: 300_000,
};
const encoder = new TextEncoder();
let clock = Date.now() * 1000;

function batch(n: number): DecodedMessage[] {
  const out: DecodedMessage[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const us = ++clock;
    const inbound = {
      topic: fleet[i % fleet.length].topic,
      payload: encoder.encode(`{"value":${i},"ts":${us}}`),
      qos: 1 as const,
      retain: false,
      receivedAtUs: us,
    };
    out[i] = { inbound, decoded: decode(inbound, opts) };
  }
  return out;
}

const feedCache = new FeedCache();
await processBatch(db.sql, batch(5000), { feedCache });

Deno.bench("processBatch: 5,000 messages, warm feed cache", { n: 20, warmup: 2 }, async (b) => {
  const pending = batch(5000);
  b.start();
  await processBatch(db.sql, pending, { feedCache });
  b.end();
});

Deno.bench("processBatch: 5,000 messages, cold feed cache", { n: 20, warmup: 2 }, async (b) => {
  const pending = batch(5000);
  b.start();
  await processBatch(db.sql, pending, { feedCache: new FeedCache() });
  b.end();
});

globalThis.addEventListener("unload", () => {
  db.close();
});

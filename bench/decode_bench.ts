/**
 * Micro-benchmarks of the receive path's pure steps: topic matching, payload parsing and
 * the whole decode of one message, by the templates and by mappings (2 and 50 rules). `deno bench bench/` (not part of `deno task test`).
 */
import { decode, type DecodeOptions } from "../src/core/decode.ts";
import type { Inbound } from "../src/core/message.ts";
import { parseBulkPayload, parseFeedPayload } from "../src/core/payload.ts";
import { compileTopics } from "../src/core/topics.ts";
import { compileMappings } from "../src/core/mappings/decode_mapped.ts";
import { benchMappings } from "./mappings_phase.ts";

const router = compileTopics();
const user = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
const topics = Array.from(
  { length: 50 },
  (_, i) => `${user}/dev${i % 10}/feeds/dev${i % 10}-f${i % 5}`,
);
const limits = { maxTextLength: 255 };
const opts: DecodeOptions = {
  router,
  maxPayloadBytes: 65536,
  maxTextLength: 255,
  maxFutureSkewMs: 300_000,
};
const encoder = new TextEncoder();
const nowUs = Date.now() * 1000;
const jsonInbound: Inbound[] = topics.map((topic, i) => ({
  topic,
  payload: encoder.encode(`{"value":${i + 0.5},"ts":${nowUs + i}}`),
  qos: 1,
  retain: false,
  receivedAtUs: nowUs + i,
}));
const plainInbound: Inbound[] = topics.map((topic, i) => ({
  topic,
  payload: encoder.encode(String(i + 0.5)),
  qos: 1,
  retain: false,
  receivedAtUs: nowUs + i,
}));

let k = 0;
Deno.bench("topic match: feed topic", { group: "topics", baseline: true }, () => {
  router.match(topics[k++ % topics.length]);
});
Deno.bench("topic match: status topic", { group: "topics" }, () => {
  router.match(`${user}/dev${k++ % 10}/status`);
});
Deno.bench("topic match: no template matches", { group: "topics" }, () => {
  router.match(`${user}/dev${k++ % 10}/other/x/y`);
});

Deno.bench("payload: plain number", { group: "payload", baseline: true }, () => {
  parseFeedPayload("23.5", limits);
});
Deno.bench('payload: {"value", "ts" µs}', { group: "payload" }, () => {
  parseFeedPayload(`{"value":23.5,"ts":${nowUs}}`, limits);
});
Deno.bench('payload: {"value", "ts" ISO 8601}', { group: "payload" }, () => {
  parseFeedPayload('{"value":23.5,"ts":"2026-01-01T00:00:00.123Z"}', limits);
});
Deno.bench("payload: text value", { group: "payload" }, () => {
  parseFeedPayload("open", limits);
});
Deno.bench("payload: many feeds, 5 entries", { group: "payload" }, () => {
  parseBulkPayload('{"t":21.5,"h":40,"p":1013,"co2":420,"door":"open"}', limits);
});

Deno.bench("decode: JSON payload with ts", { group: "decode", baseline: true }, () => {
  decode(jsonInbound[k++ % jsonInbound.length], opts);
});
Deno.bench("decode: plain number", { group: "decode" }, () => {
  decode(plainInbound[k++ % plainInbound.length], opts);
});

// Mappings (issue 22): the rule matcher is one lookup per topic level, so matching and
// decoding a Zigbee2MQTT state costs the same with the recipe's 2 rules and with 50.
const z2mRecipe = compileMappings(benchMappings(2), "2 rules");
const z2mFifty = compileMappings(benchMappings(50), "50 rules");
const z2mInbound: Inbound[] = Array.from({ length: 50 }, (_, i) => ({
  topic: `zigbee2mqtt/0x00158d00${String(i).padStart(8, "0")}`,
  payload: encoder.encode(
    `{"battery":97,"humidity":45.2,"linkquality":120,"temperature":21.${i},"voltage":2995,` +
      `"last_seen":${nowUs + i}}`,
  ),
  qos: 1,
  retain: false,
  receivedAtUs: nowUs + i,
}));
const z2mTopicLevels = z2mInbound.map((m) => m.topic);
Deno.bench("mappings match: 2 rules", { group: "mappings match", baseline: true }, () => {
  z2mRecipe.router.match(z2mTopicLevels[k++ % z2mTopicLevels.length]);
});
Deno.bench("mappings match: 50 rules", { group: "mappings match" }, () => {
  z2mFifty.router.match(z2mTopicLevels[k++ % z2mTopicLevels.length]);
});
Deno.bench("mappings match: 50 rules, no rule matches", { group: "mappings match" }, () => {
  z2mFifty.router.match(`site7/dev${k++ % 10}/other/x`);
});
const z2mOpts2 = { ...opts, mappings: z2mRecipe, router: z2mRecipe.router };
const z2mOpts50 = { ...opts, mappings: z2mFifty, router: z2mFifty.router };
Deno.bench("decode: zigbee2mqtt state, 4 readings, 2 rules", {
  group: "mappings decode",
  baseline: true,
}, () => {
  decode(z2mInbound[k++ % z2mInbound.length], z2mOpts2);
});
Deno.bench("decode: zigbee2mqtt state, 4 readings, 50 rules", { group: "mappings decode" }, () => {
  decode(z2mInbound[k++ % z2mInbound.length], z2mOpts50);
});

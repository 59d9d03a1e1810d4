/**
 * The benchmark's publisher, run as its own process so it does not share a CPU queue
 * with what it measures. It publishes `count` messages round-robin over the fleet's
 * topics, over `connections` MQTT connections, flat out (a window of unacknowledged
 * publishes per connection) or at `rate` messages/s, and prints one JSON line:
 * `{"published", "firstMs", "lastMs"}` (wall-clock ms, comparable across processes).
 *
 * Each payload carries its publish time as `ts` in µs, strictly increasing within the
 * process, so (feed_id, created_at) stays unique and created_at is the publish time.
 *
 * Usage: deno run -A bench/publisher.ts '<json PublisherConfig>'
 */
import { Buffer } from "node:buffer";
import process from "node:process";
import mqtt, { type MqttClient } from "mqtt";
import { encodeSparkplug } from "../src/core/sparkplug/encode.ts";
import { DATATYPES } from "../src/core/sparkplug/schema.ts";

/** What the publisher is told. */
export interface PublisherConfig {
  url: string;
  topicsFile: string;
  count: number;
  qos: 0 | 1;
  connections: number;
  /** Messages/s over all connections; 0 = flat out. */
  rate: number;
  /**
   * json: `{"value", "ts"}`; plain: the number; zigbee2mqtt: a Zigbee2MQTT device state of
   * `Z2M_READINGS` readings with `last_seen` in µs (the mappings phase); `sparkplug`: the
   * topics are Sparkplug DDATA topics; an NBIRTH per edge node and a DBIRTH per device
   * declare `sparkplugMetrics` Double metrics first (not counted), then each message is a
   * DDATA with all of them by alias.
   */
  format: "json" | "plain" | "zigbee2mqtt" | "sparkplug";
  /** Unacknowledged (QoS 1) or unwritten (QoS 0) publishes per connection. */
  window: number;
  /** Metrics per Sparkplug DDATA (default 100). */
  sparkplugMetrics?: number;
  /** json: a `pad` member of this many characters, for large messages (issue 26). */
  padBytes?: number;
}

/** Readings in one message of the zigbee2mqtt format (linkquality is ignored by the rule). */
export const Z2M_READINGS = 4;

/** Readings per message of a publisher config: several for zigbee2mqtt and sparkplug. */
export function readingsPerMessage(
  cfg: Pick<PublisherConfig, "format" | "sparkplugMetrics">,
): number {
  if (cfg.format === "zigbee2mqtt") return Z2M_READINGS;
  if (cfg.format === "sparkplug") return cfg.sparkplugMetrics ?? 100;
  return 1;
}

/** What the publisher reports. */
export interface PublisherReport {
  published: number;
  firstMs: number;
  lastMs: number;
  /** CPU µs the publisher process used, connections included. */
  cpuUs: number;
}

/** Wall-clock milliseconds with sub-millisecond precision. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

let lastUs = 0;
function stampUs(): number {
  const us = Math.floor(wallMs() * 1000);
  lastUs = us > lastUs ? us : lastUs + 1;
  return lastUs;
}

function connect(url: string, id: string): Promise<MqttClient> {
  // MQTT 3.1.1: no Receive Maximum from the broker caps our own in-flight publishes.
  const client = mqtt.connect(url, {
    protocolVersion: 4,
    clientId: id,
    clean: true,
    reconnectPeriod: 0,
  });
  return new Promise((resolve, reject) => {
    client.once("connect", () => resolve(client));
    client.once("error", reject);
  });
}

/** A JSON array of topics, or (`.txt`, the large fleets' files) one topic a line. */
async function readTopics(path: string): Promise<string[]> {
  if (!path.endsWith(".txt")) return JSON.parse(await Deno.readTextFile(path));
  const bytes = await Deno.readFile(path);
  const decoder = new TextDecoder();
  const topics: string[] = [];
  let start = 0;
  for (let i = bytes.indexOf(10); i >= 0; i = bytes.indexOf(10, start)) {
    if (i > start) topics.push(decoder.decode(bytes.subarray(start, i)));
    start = i + 1;
  }
  return topics;
}

async function run(cfg: PublisherConfig): Promise<PublisherReport> {
  const topics = await readTopics(cfg.topicsFile);
  const clients = await Promise.all(
    Array.from(
      { length: cfg.connections },
      (_, i) => connect(cfg.url, `bench-pub-${Deno.pid}-${i}`),
    ),
  );
  let next = 0;
  let done = 0;
  let firstMs = 0;
  let lastMs = 0;
  const started = performance.now();
  let finish!: () => void;
  const finished = new Promise<void>((r) => (finish = r));

  const sparkplug = cfg.format === "sparkplug" ? await births(clients[0], topics, cfg) : null;
  const pad = cfg.padBytes ? `,"pad":"${"x".repeat(cfg.padBytes)}"` : "";
  const payload = (i: number): string | Buffer =>
    sparkplug
      ? sparkplug(i)
      : cfg.format === "json"
      ? `{"value":${i},"ts":${stampUs()}${pad}}`
      : cfg.format === "zigbee2mqtt"
      ? `{"battery":${i % 100},"humidity":${(i % 1000) / 10},"linkquality":${i % 255},` +
        `"temperature":${(i % 400) / 10},"voltage":${2900 + (i % 200)},"last_seen":${stampUs()}}`
      : String(i);

  // Rate mode: how many messages may have been sent by now.
  const allowed = () =>
    cfg.rate > 0 ? Math.floor(((performance.now() - started) / 1000) * cfg.rate) + 1 : Infinity;

  const pump = (client: MqttClient, state: { outstanding: number }) => {
    while (state.outstanding < cfg.window && next < cfg.count && next < allowed()) {
      const i = next++;
      if (i === 0) firstMs = wallMs();
      state.outstanding++;
      client.publish(topics[i % topics.length], payload(i), { qos: cfg.qos }, (error) => {
        if (error) {
          console.error(`publish failed: ${error.message}`);
          Deno.exit(1);
        }
        state.outstanding--;
        done++;
        if (done === cfg.count) {
          lastMs = wallMs();
          finish();
        } else {
          pump(client, state);
        }
      });
    }
  };
  const states = clients.map(() => ({ outstanding: 0 }));
  const timer = cfg.rate > 0
    ? setInterval(() => clients.forEach((c, k) => pump(c, states[k])), 2)
    : undefined;
  clients.forEach((c, k) => pump(c, states[k]));
  await finished;
  clearInterval(timer);
  await Promise.all(clients.map((c) => new Promise<void>((r) => c.end(false, {}, () => r()))));
  const cpu = process.cpuUsage();
  return { published: done, firstMs, lastMs, cpuUs: cpu.user + cpu.system };
}

/**
 * Publishes the births of the Sparkplug topics `topics` (DDATA topics) and returns the
 * maker of DDATA payloads. A device's payload times are ms since the epoch, strictly
 * increasing per device (faster than 1 a ms they run ahead of the clock), so no two
 * readings of a feed share a key.
 */
async function births(client: MqttClient, topics: string[], cfg: PublisherConfig) {
  const n = cfg.sparkplugMetrics ?? 100;
  const birthOf = (type: string, topic: string) => topic.replace("/DDATA/", `/${type}/`);
  const publish = (topic: string, payload: Uint8Array) =>
    client.publishAsync(topic, Buffer.from(payload), { qos: 1 });
  const nodes = new Set(topics.map((t) => birthOf("NBIRTH", t).split("/").slice(0, 4).join("/")));
  for (const node of nodes) {
    await publish(node, encodeSparkplug({ timestamp: Date.now(), seq: 0, metrics: [] }));
  }
  const metrics = Array.from({ length: n }, (_, k) => ({
    name: `m${k}`,
    alias: k,
    datatype: DATATYPES.Double,
  }));
  const dbirths = new Map<string, number>();
  for (const t of topics) {
    const node = t.split("/").slice(0, 4).join("/");
    const seq = (dbirths.get(node) ?? 0) + 1;
    dbirths.set(node, seq);
    await publish(birthOf("DBIRTH", t), encodeSparkplug({ timestamp: Date.now(), seq, metrics }));
  }
  const lastMs = new Map<string, number>();
  // Each edge node numbers its messages: its NBIRTH was 0, each DBIRTH one more.
  const seqs = new Map<string, number>();
  for (const t of topics) {
    const node = t.split("/").slice(0, 4).join("/");
    seqs.set(node, (seqs.get(node) ?? 0) + 1);
  }
  return (i: number): Buffer => {
    const topic = topics[i % topics.length];
    const ms = Math.max(Math.floor(wallMs()), (lastMs.get(topic) ?? 0) + 1);
    lastMs.set(topic, ms);
    const node = topic.split("/").slice(0, 4).join("/");
    const seq = (seqs.get(node)! + 1) % 256;
    seqs.set(node, seq);
    return Buffer.from(encodeSparkplug({
      timestamp: ms,
      seq,
      metrics: metrics.map((m) => ({
        alias: m.alias,
        datatype: m.datatype,
        sendDatatype: false,
        value: i + m.alias / 1000,
      })),
    }));
  };
}

if (import.meta.main) {
  const cfg = JSON.parse(Deno.args[0]) as PublisherConfig;
  const report = await run(cfg);
  console.log(JSON.stringify(report));
}

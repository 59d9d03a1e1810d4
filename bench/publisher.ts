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
import process from "node:process";
import mqtt, { type MqttClient } from "mqtt";

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
   * `Z2M_READINGS` readings with `last_seen` in µs (the mappings phase).
   */
  format: "json" | "plain" | "zigbee2mqtt";
  /** Unacknowledged (QoS 1) or unwritten (QoS 0) publishes per connection. */
  window: number;
}

/** Readings in one message of the zigbee2mqtt format (linkquality is ignored by the rule). */
export const Z2M_READINGS = 4;

/** Readings per message of a format. */
export function readingsPerMessage(format: PublisherConfig["format"]): number {
  return format === "zigbee2mqtt" ? Z2M_READINGS : 1;
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

async function run(cfg: PublisherConfig): Promise<PublisherReport> {
  const topics: string[] = JSON.parse(await Deno.readTextFile(cfg.topicsFile));
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

  const payload = (i: number): string =>
    cfg.format === "json"
      ? `{"value":${i},"ts":${stampUs()}}`
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

if (import.meta.main) {
  const cfg = JSON.parse(Deno.args[0]) as PublisherConfig;
  const report = await run(cfg);
  console.log(JSON.stringify(report));
}

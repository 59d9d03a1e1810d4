/**
 * The broker limit: a subscriber that only counts. Same client library as `serve`
 * (MQTT.js, MQTT 5, the same subscription QoS), but it acknowledges on receipt and does
 * nothing else, so its rate is what the broker can deliver to one connection on this
 * machine. Prints `ready` once subscribed, then one JSON line when `count` messages
 * arrived (or nothing arrived for `idleMs`): `{"received", "firstMs", "lastMs"}`.
 *
 * Usage: deno run -A bench/counter.ts '<json CounterConfig>'
 */
import mqtt from "mqtt";
import process from "node:process";
import { wallMs } from "./publisher.ts";

/** What the counter is told. */
export interface CounterConfig {
  url: string;
  filter: string;
  qos: 0 | 1;
  count: number;
  idleMs: number;
}

/** What the counter reports. */
export interface CounterReport {
  received: number;
  firstMs: number;
  lastMs: number;
  /** CPU time used from subscribing to the report, in µs. */
  cpuUs: number;
}

if (import.meta.main) {
  const cfg = JSON.parse(Deno.args[0]) as CounterConfig;
  const client = mqtt.connect(cfg.url, {
    protocolVersion: 5,
    clientId: `bench-counter-${Deno.pid}`,
    clean: true,
    reconnectPeriod: 0,
  });
  let received = 0;
  let firstMs = 0;
  let lastMs = 0;
  let lastArrival = performance.now();
  let cpuAtReady = 0;
  const cpuNow = () => {
    const u = process.cpuUsage();
    return u.user + u.system;
  };
  const report = () => {
    const cpuUs = cpuNow() - cpuAtReady;
    console.log(JSON.stringify({ received, firstMs, lastMs, cpuUs } satisfies CounterReport));
    client.end(true);
    Deno.exit(0);
  };
  client.on("message", () => {
    lastMs = wallMs();
    if (received === 0) firstMs = lastMs;
    received++;
    lastArrival = performance.now();
    if (received >= cfg.count) report();
  });
  client.on("connect", () => {
    client.subscribe(cfg.filter, { qos: cfg.qos }, (error) => {
      if (error) throw error;
      cpuAtReady = cpuNow();
      console.log("ready");
    });
  });
  setInterval(() => {
    if (received > 0 && performance.now() - lastArrival > cfg.idleMs) report();
  }, 100);
}

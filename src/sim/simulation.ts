/**
 * The simulation engine of `simulate`: builds the fleet, writes the manifest, registers
 * it, opens the device connections, then publishes paced traffic (and churn) until
 * --count, --duration or `stop()`, and sums it up. `commands/simulate.ts` wires it.
 */
import { Buffer } from "node:buffer";
import { createDeviceLinks, type DeviceLinks } from "./device_links.ts";
import { buildFleet, type Fleet, fleetManifest } from "./fleet.ts";
import { createPacer } from "./pacer.ts";
import { createRng } from "./prng.ts";
import { registerInDatabase, type RegisterResult } from "./register.ts";
import {
  buildSummary,
  createSendStats,
  formatStatusLine,
  type SendStats,
  type SimSummary,
  totalSent,
} from "./report.ts";
import type { SimulateTargets } from "./targets.ts";
import { createTraffic, type PayloadFormat, type SimMessage, type Traffic } from "./traffic.ts";
import { createFormatTraffic, fleetInFormat, SIM_FORMATS } from "./formats.ts";
import { createSparkplugFleet } from "./sparkplug_fleet.ts";
import { SPARKPLUG_NAMESPACE } from "../core/sparkplug/topic.ts";
import { nowUs } from "../clock.ts";
import { redactUrl } from "../log.ts";
import type { Qos } from "../core/message.ts";
import { formatTopic } from "../core/topics.ts";
import { StatusLine } from "../status_line.ts";

/** What the engine reads of `simulate`'s options (src/cli/simulate_options.ts). */
export interface SimulationConfig {
  seed: number;
  users: number;
  devices: number;
  feeds: number;
  rate: number;
  duration?: number;
  count?: number;
  qos: Qos;
  formats: readonly PayloadFormat[];
  /**
   * `feedline` (its own topics and payloads), `sparkplug` (src/sim/sparkplug_fleet.ts), or
   * a format of src/sim/formats.ts.
   */
  format: string;
  badRatio: number;
  spikeRatio: number;
  thresholdMode: "reject" | "alert";
  driftRatio: number;
  /** Milliseconds; undefined: no max_silence registered. */
  maxSilence?: number;
  silentRatio: number;
  /** Milliseconds of model time. */
  silentAfter: number;
  connections: number;
  connectRate: number;
  churn: number;
  reconnectMs: number;
  maxInflight: number;
  drainTimeoutMs: number;
  manifest?: string;
  startTime?: number;
  clientIdPrefix: string;
  mqttUsername?: string;
  mqttPassword?: string;
  keepaliveSec: number;
  feedTopic: string;
  feedsTopic: string;
  statusTopic: string;
  maxPayloadBytes: number;
  /** Where Sparkplug topics start (serve's --sparkplug-namespace). */
  sparkplugNamespace?: string;
}

/** Where progress lines go. */
export interface ProgressSink {
  /** On a terminal, one line rewritten in place every second; otherwise a line every 10 s. */
  tty: boolean;
  write(text: string): void;
}

/** A running simulation. */
export interface Simulation {
  fleet: Fleet;
  /** The connections (null with --count 0). */
  links: DeviceLinks | null;
  send: SendStats;
  registered: RegisterResult | null;
  /** Resolves with the summary once publishing stopped and connections closed. */
  done: Promise<SimSummary>;
  /** Stops publishing; `done` resolves after the in-flight messages settle. */
  stop(): void;
}

const MAX_BATCH = 1000;
const CLOSE_TIMEOUT_MS = 5_000;
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Builds the fleet, writes the manifest, registers, opens the connections, then
 * publishes in the background until --count, --duration or `stop()`.
 */
export async function startSimulation(
  config: SimulationConfig,
  targets: SimulateTargets,
  progress?: ProgressSink,
): Promise<Simulation> {
  const format = Object.hasOwn(SIM_FORMATS, config.format) ? SIM_FORMATS[config.format] : null;
  const built = buildFleet({
    seed: config.seed,
    users: config.users,
    devicesPerUser: config.devices,
    feedsPerDevice: config.feeds,
  });
  const fleet = format ? fleetInFormat(built, format, createRng(config.seed, 4)) : built;
  const templates = {
    feed: config.feedTopic,
    feeds: config.feedsTopic,
    status: config.statusTopic,
  };
  if (config.manifest) {
    const topics = format ? { mappings: format.recipe } : templates;
    await Deno.writeTextFile(
      config.manifest,
      JSON.stringify(fleetManifest(fleet, topics), null, 2) + "\n",
    );
  }
  // A Sparkplug fleet needs no registering: serve registers what each BIRTH declares.
  const sparkplug = config.format === "sparkplug"
    ? createSparkplugFleet(fleet, {
      seed: config.seed,
      namespace: config.sparkplugNamespace ?? SPARKPLUG_NAMESPACE,
    })
    : null;
  const registered = targets.register && !sparkplug
    ? await registerInDatabase(targets.databaseUrl!, fleet, {
      thresholdMode: config.thresholdMode,
      maxSilenceMs: config.maxSilence ?? null,
      alias: format?.alias ?? null,
      urlFrom: targets.databaseUrlFrom,
    })
    : null;
  const send = createSendStats();
  const base = {
    seed: config.seed,
    broker: redactUrl(targets.mqttUrl),
    protocol: targets.protocolVersion === 5 ? "5" as const : "3.1.1" as const,
    qos: config.qos,
    fleet: {
      users: fleet.users.length,
      devices: fleet.devices.length,
      feeds: fleet.devices.reduce((n, d) => n + d.feeds.length, 0),
    },
    connections: config.count === 0 ? 0 : sparkplug?.nodes ?? config.connections,
    registered,
    manifest: config.manifest ?? null,
    auto_register: targets.autoRegister,
    threshold_mode: config.thresholdMode,
  };
  const targetRate = config.rate > 0 ? config.rate : null;
  if (config.count === 0) {
    return {
      fleet,
      links: null,
      send,
      registered,
      done: Promise.resolve(buildSummary(base, send, null, 0, targetRate)),
      stop() {},
    };
  }

  const links = createDeviceLinks({
    url: targets.mqttUrl,
    username: config.mqttUsername,
    password: config.mqttPassword,
    protocolVersion: targets.protocolVersion,
    keepaliveSec: config.keepaliveSec,
    clientIdPrefix: config.clientIdPrefix,
    // A Sparkplug edge node per connection, its births and deaths its status.
    statusTopics: sparkplug
      ? Array.from({ length: sparkplug.nodes }, () => "")
      : fleet.devices.map((d) =>
        format
          ? format.statusTopic(d)
          : formatTopic(templates.status, { user_id: d.userId, device_code: d.code })
      ),
    ...(format ? { statusWords: { online: format.online, offline: format.offline } } : {}),
    connections: sparkplug?.nodes ?? config.connections,
    presence: sparkplug?.presence,
    connectRate: config.connectRate,
    reconnectMs: config.reconnectMs,
    statusQos: config.qos,
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    tls: targets.tls,
    tlsSettings: targets.tlsSettings,
  });

  let stopped = false;
  let wake: () => void = () => {};
  const stopSignal = new Promise<void>((resolve) => (wake = resolve));
  /** Sleeps `ms`, or less when stopped; leaves no timer behind. */
  const pause = (ms: number) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    return Promise.race([
      stopSignal,
      new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))),
    ]).then(() => clearTimeout(timer));
  };
  const stop = () => {
    stopped = true;
    wake();
  };

  try {
    await links.open(30_000);
  } catch (error) {
    await links.close(0);
    throw error;
  }

  const traffic: Traffic = sparkplug?.traffic ??
    (format ? createFormatTraffic(config.seed, fleet, format) : createTraffic(config.seed, {
      fleet,
      templates,
      formats: config.formats,
      badRatio: config.badRatio,
      spikeRatio: config.spikeRatio,
      maxPayloadBytes: config.maxPayloadBytes,
      thresholdMode: config.thresholdMode,
      driftRatio: config.driftRatio,
      silentRatio: config.silentRatio,
      silentAfterUs: config.silentAfter * 1000,
    }));
  const stepUs = config.rate > 0 ? 1e6 / config.rate : 10;
  const modelTime = config.startTime !== undefined
    ? (seq: number) => config.startTime! + Math.round(seq * stepUs)
    : () => nowUs();

  const publish = (msg: SimMessage) => {
    send.sent[msg.kind]++;
    send.readings += msg.readings;
    if (msg.kind === "bad") {
      send.badByReason[msg.reason!] = (send.badByReason[msg.reason!] ?? 0) + 1;
    }
    send.inflight++;
    const payload = typeof msg.payload === "string" ? msg.payload : Buffer.from(msg.payload);
    links.clientFor(msg.device).publish(msg.topic, payload, { qos: config.qos }, (error) => {
      send.inflight--;
      if (error) {
        send.failed++;
        send.lastPublishError = error.message;
      } else {
        send.acked++;
        send.readingsAcked += msg.readings;
      }
    });
  };

  const startMs = performance.now();
  let publishingEndedMs = startMs;

  async function pump(): Promise<void> {
    const deadline = config.duration !== undefined ? startMs + config.duration : Infinity;
    const limit = config.count ?? Infinity;
    const pacer = createPacer({ rate: config.rate, startMs });
    let seq = 0;
    while (!stopped && seq < limit) {
      const now = performance.now();
      if (now >= deadline) break;
      const room = config.maxInflight - send.inflight;
      if (room <= 0) {
        await pause(5);
        continue;
      }
      const n = pacer.take(now, Math.min(room, limit - seq, MAX_BATCH));
      for (let i = 0; i < n; i++) publish(traffic.next(modelTime(seq++)));
      if (config.rate === 0) {
        await pause(0); // let the sockets write and the acks come in
      } else if (n === 0) {
        await pause(Math.min(100, pacer.waitMs(now), Math.max(0, deadline - now)));
      }
    }
    publishingEndedMs = performance.now();
  }

  async function churn(): Promise<void> {
    if (config.churn <= 0) return;
    const rng = createRng(config.seed, 3);
    while (!stopped) {
      // Exponential gaps: drops arrive as a Poisson process of rate --churn.
      const gapMs = (-Math.log(1 - rng.next()) / config.churn) * 1000;
      const until = performance.now() + gapMs;
      while (!stopped && performance.now() < until) {
        await pause(Math.min(100, until - performance.now()));
      }
      if (stopped) break;
      const up = links.upIndexes();
      if (up.length > 0) links.drop(rng.pick(up), config.reconnectMs * (0.5 + rng.next()));
    }
  }

  const statusLine = progress
    ? new StatusLine({
      mode: progress.tty ? "live" : "lines",
      write: progress.write,
      liveIntervalMs: 1000,
      lineIntervalMs: 10_000,
    })
    : null;
  let lastSent = 0;
  let lastAt = startMs;
  const report = (final: boolean) => {
    if (!statusLine) return;
    const now = performance.now();
    const sent = totalSent(send);
    const rate = now > lastAt ? ((sent - lastSent) * 1000) / (now - lastAt) : 0;
    lastSent = sent;
    lastAt = now;
    const line = formatStatusLine(send, links.stats, links.up, links.size, rate, now - startMs);
    statusLine.show(line, true);
    if (final) statusLine.finish(true);
  };
  const reporter = progress
    ? setInterval(() => report(false), progress.tty ? 1000 : 10_000)
    : undefined;

  const done = (async () => {
    try {
      await Promise.all([pump().finally(stop), churn()]);
      const settleUntil = performance.now() + config.drainTimeoutMs;
      while (send.inflight > 0 && performance.now() < settleUntil) {
        await new Promise((r) => setTimeout(r, 10));
      }
    } finally {
      clearInterval(reporter);
      report(true);
      await links.close(CLOSE_TIMEOUT_MS);
    }
    return buildSummary(base, send, links.stats, publishingEndedMs - startMs, targetRate);
  })();

  return { fleet, links, send, registered, done, stop };
}

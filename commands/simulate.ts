/**
 * `feedline simulate`: publishes the traffic of a fake device fleet (readings in every
 * payload format, device status with last wills, churn, and bad messages on purpose) to
 * a broker, for demos, development and load tests. The topic and payload codecs of the
 * core run in reverse, so what it sends is exactly what `serve` parses.
 */
import { z } from "zod";
import { databaseOptions, decodeOptions, logOptions } from "../src/cli/option_groups.ts";
import postgres from "postgres";
import { describePgError } from "../src/db/database.ts";
import { createDeviceLinks, type DeviceLinks } from "../src/sim/device_links.ts";
import { readEndpoints } from "../src/embedded/endpoints.ts";
import { FeedlineError } from "../src/errors.ts";
import { buildFleet, type Fleet, fleetManifest } from "../src/sim/fleet.ts";
import { redactUrl } from "../src/log.ts";
import type { Qos } from "../src/core/message.ts";
import { formatOptionsHelp, option, resolveOptions, zs } from "../src/cli/options.ts";
import { createPacer } from "../src/sim/pacer.ts";
import { createRng } from "../src/sim/prng.ts";
import { registerFleet, type RegisterResult } from "../src/sim/register.ts";
import {
  buildSummary,
  createSendStats,
  formatStatusLine,
  formatSummary,
  type SendStats,
  type SimSummary,
  totalSent,
} from "../src/sim/report.ts";
import { nowUs } from "../src/clock.ts";
import { compileTopics, formatTopic } from "../src/core/topics.ts";
import {
  createTraffic,
  PAYLOAD_FORMATS,
  type PayloadFormat,
  type SimMessage,
} from "../src/sim/traffic.ts";
import { mqttOptions as serveOptions } from "../src/cli/serve_options.ts";

const NUMBER_RE = /^\d+(?:\.\d+)?$/;

/** A non-negative decimal number from a flag or variable. */
const zNumber = (max: number) =>
  z.string().trim().regex(NUMBER_RE, "a number").transform(Number).pipe(
    z.number().min(0).max(max, `at most ${max}`),
  );

/** `90`, `90s`, `500ms`, `5m`, `1h` → milliseconds. */
const zDuration = z.string().trim().toLowerCase().transform((v, ctx) => {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(v);
  if (!m) {
    ctx.addIssue({ code: "custom", message: "a duration like 90, 30s, 5m or 1h" });
    return z.NEVER;
  }
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? "s"]!;
  return Number(m[1]) * unit;
});

const zFormats = z.string().trim().transform((v, ctx) => {
  const list = [...new Set(v.split(",").map((s) => s.trim()).filter(Boolean))];
  const bad = list.filter((f) => !PAYLOAD_FORMATS.includes(f as PayloadFormat));
  if (list.length === 0 || bad.length > 0) {
    ctx.addIssue({
      code: "custom",
      message: `a comma-separated list of ${PAYLOAD_FORMATS.join(", ")}`,
    });
    return z.NEVER;
  }
  return list as PayloadFormat[];
});

const zTime = z.string().trim().transform((v, ctx) => {
  const ms = Date.parse(v);
  if (!/^\d{4}-\d{2}-\d{2}/.test(v) || !Number.isFinite(ms)) {
    ctx.addIssue({ code: "custom", message: "an ISO 8601 time like 2026-01-01T00:00:00Z" });
    return z.NEVER;
  }
  return ms * 1000;
});

/** Options of `simulate`. */
export const simulateOptions = {
  users: option({
    flag: "users",
    env: "FEEDLINE_SIM_USERS",
    schema: zs.int(1, 100_000).default(2),
    defaultText: "2",
    doc: "Users in the fleet.",
  }),
  devices: option({
    flag: "devices",
    env: "FEEDLINE_SIM_DEVICES",
    schema: zs.int(1, 100_000).default(5),
    defaultText: "5",
    doc: "Devices per user.",
  }),
  feeds: option({
    flag: "feeds",
    env: "FEEDLINE_SIM_FEEDS",
    schema: zs.int(1, 100).default(4),
    defaultText: "4",
    doc: "Feeds per device, kinds in turn: temperature, humidity, battery (with thresholds), " +
      "counter, switch (ON/OFF).",
  }),
  seed: option({
    flag: "seed",
    env: "FEEDLINE_SIM_SEED",
    schema: zs.int(0, 4_294_967_295).default(1),
    defaultText: "1",
    doc: "Same seed, same fleet (user ids, device codes, feed keys, thresholds) and same values.",
  }),
  rate: option({
    flag: "rate",
    env: "FEEDLINE_SIM_RATE",
    schema: zNumber(1_000_000).default(10),
    defaultText: "10",
    doc: "Messages per second in total (device status not counted); 0: as fast as it goes.",
  }),
  duration: option({
    flag: "duration",
    env: "FEEDLINE_SIM_DURATION",
    schema: zDuration.optional(),
    defaultText: "until --count or Ctrl-C",
    doc: "How long to publish: 90, 30s, 5m, 1h.",
  }),
  count: option({
    flag: "count",
    env: "FEEDLINE_SIM_COUNT",
    schema: zs.int(0).optional(),
    defaultText: "unlimited",
    doc: "Messages to publish, then stop; 0: only --register / --manifest, no traffic.",
  }),
  qos: option({
    flag: "qos",
    env: "FEEDLINE_SIM_QOS",
    schema: z.enum(["0", "1", "2"]).default("1").transform((v) => Number(v) as Qos),
    defaultText: "1",
    doc: "QoS of the published messages (status and wills too).",
  }),
  formats: option({
    flag: "formats",
    env: "FEEDLINE_SIM_FORMATS",
    schema: zFormats.default(["plain", "json", "bulk"]),
    defaultText: "plain,json,bulk",
    doc: 'Payload formats to mix: plain (`21.5`, `ON`), json (`{"value", "ts"}`), ' +
      "bulk (many feeds of one device in one message).",
  }),
  badRatio: option({
    flag: "bad-ratio",
    env: "FEEDLINE_SIM_BAD_RATIO",
    schema: zNumber(1).default(0),
    defaultText: "0",
    doc: "Share of messages built to be rejected, every reject reason in turn (0..1).",
  }),
  spikeRatio: option({
    flag: "spike-ratio",
    env: "FEEDLINE_SIM_SPIKE_RATIO",
    schema: zNumber(1).default(0.001),
    defaultText: "0.001",
    doc: "Share of readings of feeds with thresholds sent far out of range (out_of_range).",
  }),
  connections: option({
    flag: "connections",
    env: "FEEDLINE_SIM_CONNECTIONS",
    schema: zs.int(1, 100_000).optional(),
    defaultText: "one per device",
    doc: "MQTT connections; devices are spread over them. With one per device each device has " +
      "its own `online` status and `offline` last will.",
  }),
  connectRate: option({
    flag: "connect-rate",
    env: "FEEDLINE_SIM_CONNECT_RATE",
    schema: zNumber(100_000).pipe(z.number().min(1, "at least 1")).default(200),
    defaultText: "200",
    doc: "New connections per second at most, so a large fleet does not storm the broker.",
  }),
  churn: option({
    flag: "churn",
    env: "FEEDLINE_SIM_CHURN",
    schema: zNumber(10_000).default(0),
    defaultText: "0",
    doc: "Abrupt disconnects per second across the fleet (the broker publishes the last will " +
      "`offline`); each comes back after about --reconnect-ms.",
  }),
  reconnectMs: option({
    flag: "reconnect-ms",
    env: "FEEDLINE_SIM_RECONNECT_MS",
    schema: zs.int(1, 3_600_000).default(2000),
    defaultText: "2000",
    doc: "A dropped device stays away 0.5–1.5 times this long; also the retry delay after a lost " +
      "connection.",
  }),
  maxInflight: option({
    flag: "max-inflight",
    env: "FEEDLINE_SIM_MAX_INFLIGHT",
    schema: zs.int(1, 10_000_000).default(10000),
    defaultText: "10000",
    doc: "Messages handed to connections but not yet acked (or, QoS 0, written); at the limit " +
      "publishing waits.",
  }),
  drainTimeoutMs: option({
    flag: "drain-timeout-ms",
    env: "FEEDLINE_SIM_DRAIN_TIMEOUT_MS",
    schema: zs.int(0, 3_600_000).default(10_000),
    defaultText: "10000",
    doc: "At the end, how long to wait for the broker to ack what is in flight; the rest is " +
      "reported unsettled.",
  }),
  register: option({
    flag: "register",
    env: "FEEDLINE_SIM_REGISTER",
    schema: zs.bool().optional(),
    defaultText: "on with a running serve's embedded database, off otherwise",
    doc: "Write the fleet (users, devices, feeds with thresholds) into the database first, " +
      "idempotently, so that serve accepts its traffic without auto-register.",
    boolean: true,
  }),
  manifest: option({
    flag: "manifest",
    env: "FEEDLINE_SIM_MANIFEST",
    schema: z.string().min(1).optional(),
    defaultText: "none",
    doc: "Write the fleet as JSON to this file.",
  }),
  startTime: option({
    flag: "start-time",
    env: "FEEDLINE_SIM_START_TIME",
    schema: zTime.optional(),
    defaultText: "the wall clock",
    doc: "Model clock start (ISO 8601): each message 1/rate s after the last, so values and " +
      "device timestamps depend on the seed alone.",
  }),
  clientIdPrefix: option({
    flag: "client-id-prefix",
    env: "FEEDLINE_SIM_CLIENT_ID_PREFIX",
    schema: z.string().regex(/^[A-Za-z0-9_.-]{1,200}$/, "letters, digits, _ . -").optional(),
    defaultText: "feedline-sim-<random>",
    doc: "Client ids are <prefix>-<connection number>.",
  }),
  json: option({
    flag: "json",
    env: "FEEDLINE_SIM_JSON",
    schema: zs.bool().default(false),
    defaultText: "off",
    doc: "Print the final summary as JSON on stdout (progress goes to stderr).",
    boolean: true,
  }),
  mqttUrl: option({
    flag: "mqtt-url",
    env: "MQTT_URL",
    schema: serveOptions.mqttUrl.schema,
    defaultText: "the broker of a running serve",
    doc: "Broker URL. Unset: the broker of the serve running with the same --data-dir.",
    secret: "url",
  }),
  mqttUsername: serveOptions.mqttUsername,
  mqttPassword: serveOptions.mqttPassword,
  mqttProtocol: option({
    flag: "mqtt-protocol",
    env: "MQTT_PROTOCOL",
    schema: z.enum(["5", "3.1.1"]).optional(),
    defaultText: "5 (3.1.1 for a running serve's broker)",
    doc: "MQTT protocol version.",
  }),
  keepaliveSec: serveOptions.keepaliveSec,
  databaseUrl: option({
    ...databaseOptions.databaseUrl,
    defaultText: "a running serve's embedded database",
    doc: "PostgreSQL that --register writes the fleet to.",
  }),
  dataDir: option({
    ...databaseOptions.dataDir,
    doc: "The --data-dir of the serve to find (its endpoints.json) when MQTT_URL is unset.",
  }),
  feedTopic: decodeOptions.feedTopic,
  feedsTopic: decodeOptions.feedsTopic,
  statusTopic: decodeOptions.statusTopic,
  maxPayloadBytes: option({
    ...decodeOptions.maxPayloadBytes,
    doc: "serve's --max-payload-bytes: too_large bad messages are one byte over it.",
  }),
  verbose: logOptions.verbose,
};

/** `simulate`'s configuration, validated. */
export type SimulateConfig = ReturnType<typeof parseSimulateArgs>;

/** Parses flags and environment into a validated configuration. Pure. */
export function parseSimulateArgs(args: string[], env: Record<string, string | undefined>) {
  const { values, positionals } = resolveOptions(simulateOptions, args, env, "simulate");
  if (positionals.length > 0) {
    throw new FeedlineError("USAGE", `simulate takes no arguments (got "${positionals[0]}")`);
  }
  // Compiled only to fail early, naming the flag, on a template serve would refuse too.
  compileTopics({ feed: values.feedTopic, feeds: values.feedsTopic, status: values.statusTopic });
  const deviceCount = values.users * values.devices;
  if (values.connections !== undefined && values.connections > deviceCount) {
    throw new FeedlineError(
      "CONFIG_INVALID",
      `--connections (${values.connections}) is more than the fleet's ${deviceCount} devices; ` +
        `raise --users or --devices, or lower --connections`,
    );
  }
  return {
    ...values,
    connections: values.connections ?? deviceCount,
    clientIdPrefix: values.clientIdPrefix ??
      `feedline-sim-${crypto.randomUUID().slice(0, 8)}`,
  };
}

/** Where simulate publishes (and registers), once flags, env and a running serve are read. */
export interface SimulateTargets {
  mqttUrl: string;
  protocolVersion: 4 | 5;
  databaseUrl: string | null;
  register: boolean;
  /** True when the broker came from a running serve's endpoints file. */
  foundServe: boolean;
}

/**
 * Fills in what flags and env left open from a running `serve` (its endpoints file under
 * --data-dir): its broker, and its embedded database for --register. Throws one
 * actionable line when there is nothing to publish to.
 */
export async function resolveTargets(config: SimulateConfig): Promise<SimulateTargets> {
  const needEndpoints = !config.mqttUrl || (!config.databaseUrl && config.register !== false);
  const endpoints = needEndpoints ? await readEndpoints(config.dataDir) : null;
  const mqttUrl = config.mqttUrl ?? endpoints?.mqttUrl;
  if (!mqttUrl) {
    throw new FeedlineError(
      "BROKER_UNREACHABLE",
      `no broker to publish to: set MQTT_URL, or start \`deno task serve\` in another terminal ` +
        `(no running serve found under --data-dir ${config.dataDir})`,
    );
  }
  const foundServe = !config.mqttUrl;
  const dbFromServe = !config.databaseUrl && endpoints?.databaseUrl ? endpoints.databaseUrl : null;
  const databaseUrl = config.databaseUrl ?? dbFromServe;
  const register = config.register ?? dbFromServe !== null;
  if (register && !databaseUrl) {
    throw new FeedlineError(
      "CONFIG_INVALID",
      "--register needs DATABASE_URL (or a running serve with its embedded database)",
    );
  }
  // A broker found through serve may be its embedded aedes, which speaks 3.1.1 only;
  // every broker speaks 3.1.1.
  const protocol = config.mqttProtocol ?? (foundServe ? "3.1.1" : "5");
  return { mqttUrl, protocolVersion: protocol === "5" ? 5 : 4, databaseUrl, register, foundServe };
}

/** Help text of `simulate`. */
export const help = `feedline simulate — publish the traffic of a simulated device fleet

Usage: feedline simulate [options]

With \`deno task serve\` running in another terminal (embedded broker and database), plain
\`deno task simulate\` finds it, registers the fleet and publishes 10 messages a second.
Against a real broker: MQTT_URL=mqtt://host:1883 [DATABASE_URL=... --register].

Options (flag, [environment variable], default):
${formatOptionsHelp(simulateOptions)}
`;

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
  config: SimulateConfig,
  targets: SimulateTargets,
  progress?: ProgressSink,
): Promise<Simulation> {
  const fleet = buildFleet({
    seed: config.seed,
    users: config.users,
    devicesPerUser: config.devices,
    feedsPerDevice: config.feeds,
  });
  const templates = {
    feed: config.feedTopic,
    feeds: config.feedsTopic,
    status: config.statusTopic,
  };
  if (config.manifest) {
    await Deno.writeTextFile(
      config.manifest,
      JSON.stringify(fleetManifest(fleet, templates), null, 2) + "\n",
    );
  }
  const registered = targets.register ? await register(targets.databaseUrl!, fleet) : null;
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
    connections: config.count === 0 ? 0 : config.connections,
    registered,
    manifest: config.manifest ?? null,
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
    statusTopics: fleet.devices.map((d) =>
      formatTopic(templates.status, { user_id: d.userId, device_code: d.code })
    ),
    connections: config.connections,
    connectRate: config.connectRate,
    reconnectMs: config.reconnectMs,
    statusQos: config.qos,
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
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

  const traffic = createTraffic(config.seed, {
    fleet,
    templates,
    formats: config.formats,
    badRatio: config.badRatio,
    spikeRatio: config.spikeRatio,
    maxPayloadBytes: config.maxPayloadBytes,
  });
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
    links.clientFor(msg.device).publish(msg.topic, msg.payload, { qos: config.qos }, (error) => {
      send.inflight--;
      if (error) {
        send.failed++;
        send.lastPublishError = error.message;
      } else {
        send.acked++;
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

  let lastSent = 0;
  let lastAt = startMs;
  const report = (final: boolean) => {
    if (!progress) return;
    const now = performance.now();
    const sent = totalSent(send);
    const rate = now > lastAt ? ((sent - lastSent) * 1000) / (now - lastAt) : 0;
    lastSent = sent;
    lastAt = now;
    const line = formatStatusLine(send, links.stats, links.up, links.size, rate, now - startMs);
    if (progress.tty) progress.write(`\r${line}\x1b[K${final ? "\n" : ""}`);
    else progress.write(`${line}\n`);
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

async function register(url: string, fleet: Fleet): Promise<RegisterResult> {
  // No `select 1` probe first: against the embedded PGlite, a query outside a
  // transaction can be disturbed by serve's traffic on the shared backend; the
  // transaction of registerFleet is safe, and its first query tells whether we connect.
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    return await registerFleet(sql, fleet);
  } catch (error) {
    const missing = (error as { code?: string }).code === "42P01";
    throw new FeedlineError(
      missing ? "CONFIG_INVALID" : "DATABASE_UNREACHABLE",
      missing
        ? `the database at ${redactUrl(url)} has no feedline tables; run \`deno task migrate\` ` +
          `(or start serve, which migrates) first`
        : `cannot register the fleet in ${redactUrl(url)}: ${describePgError(error)}; ` +
          `check DATABASE_URL and that the server is running`,
      { cause: error },
    );
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Runs `simulate` until --count, --duration or SIGINT/SIGTERM. */
export async function run(args: string[]): Promise<void> {
  const config = parseSimulateArgs(args, Deno.env.toObject());
  const targets = await resolveTargets(config);
  const encoder = new TextEncoder();
  const progress: ProgressSink = {
    tty: Deno.stderr.isTerminal(),
    write: (text) => {
      Deno.stderr.writeSync(encoder.encode(text));
    },
  };
  if (!config.json) {
    progress.write(
      `simulate: publishing to ${redactUrl(targets.mqttUrl)}` +
        `${targets.foundServe ? ` (found serve in ${config.dataDir})` : ""}` +
        `${targets.register ? "; registering the fleet" : ""}; Ctrl-C to stop\n`,
    );
  }
  const sim = await startSimulation(config, targets, progress);
  const onSignal = () => sim.stop();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const summary = await sim.done;
    console.log(config.json ? JSON.stringify(summary) : formatSummary(summary));
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

/**
 * The options of `simulate`: fleet, traffic, connections, targets, and the topic
 * templates it shares with `serve`. Parsing is pure; the engine is src/sim/simulation.ts.
 */
import { z } from "zod";
import { databaseOptions, databaseUrlFrom, decodeOptions, logOptions } from "./option_groups.ts";
import { mqttClientOptions, mqttTlsOptions } from "./mqtt_options.ts";
import { option, resolveOptions, zs } from "./options.ts";
import { FeedlineError } from "../errors.ts";
import { PAYLOAD_FORMATS, type PayloadFormat, type Qos } from "../core/message.ts";
import { compileTopics } from "../core/topics.ts";
import { sparkplugOptions } from "./sparkplug_options.ts";

const NUMBER_RE = /^\d+(?:\.\d+)?$/;

/**
 * The values of `simulate --format`: feedline's own, Sparkplug B (an engine of its own,
 * src/sim/sparkplug_fleet.ts), then those of src/sim/formats.ts (`SIM_FORMATS`, which a
 * test keeps equal to the rest of this list; add a format to both).
 */
export const SIM_FORMAT_NAMES = [
  "feedline",
  "sparkplug",
  "zigbee2mqtt",
  "tasmota",
  "shelly-gen2",
  "cbor",
] as const;

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
  format: option({
    flag: "format",
    env: "FEEDLINE_SIM_FORMAT",
    schema: z.enum(SIM_FORMAT_NAMES).default("feedline"),
    defaultText: "feedline",
    doc: "feedline, sparkplug (edge nodes for serve --sparkplug-tenant), or zigbee2mqtt, " +
      "tasmota, shelly-gen2, cbor (for a serve with that file of deploy/mappings/).",
  }),
  sparkplugNamespace: sparkplugOptions.sparkplugNamespace,
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
  thresholdMode: option({
    flag: "threshold-mode",
    env: "FEEDLINE_SIM_THRESHOLD_MODE",
    schema: z.enum(["reject", "alert"]).default("reject"),
    defaultText: "reject",
    doc: "The threshold_mode --register gives the feeds: `reject` (spikes are out_of_range " +
      "rejects) or `alert` (spikes and drifts are stored and open alerts).",
  }),
  driftRatio: option({
    flag: "drift-ratio",
    env: "FEEDLINE_SIM_DRIFT_RATIO",
    schema: zNumber(1).default(0),
    defaultText: "0",
    doc: "Share of feeds with thresholds whose values drift out of range and back, again and " +
      "again (a 2-minute cycle of model time, out for about a third of it).",
  }),
  maxSilence: option({
    flag: "max-silence",
    env: "FEEDLINE_SIM_MAX_SILENCE",
    schema: zDuration.optional(),
    defaultText: "none",
    doc: "The max_silence --register gives every feed: one silent longer gets a stale alert.",
  }),
  silentRatio: option({
    flag: "silent-ratio",
    env: "FEEDLINE_SIM_SILENT_RATIO",
    schema: zNumber(1).default(0),
    defaultText: "0",
    doc: "Share of devices that fall silent after --silent-after: connected, publishing no " +
      "more readings (one device at least keeps publishing).",
  }),
  silentAfter: option({
    flag: "silent-after",
    env: "FEEDLINE_SIM_SILENT_AFTER",
    schema: zDuration.optional(),
    defaultText: "30s",
    doc: "Model time after the first message at which the --silent-ratio devices go quiet.",
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
    ...mqttClientOptions.mqttUrl,
    defaultText: "the broker of a running serve",
    doc: "Broker URL. Unset: the broker of the serve running with the same --data-dir.",
  }),
  mqttUsername: mqttClientOptions.mqttUsername,
  mqttPassword: mqttClientOptions.mqttPassword,
  mqttProtocol: option({
    ...mqttClientOptions.mqttProtocol,
    defaultText: "5 (3.1.1 for a running serve's broker)",
    doc: "MQTT protocol version.",
  }),
  keepaliveSec: mqttClientOptions.keepaliveSec,
  ...mqttTlsOptions,
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
  const { values, positionals, sources } = resolveOptions(simulateOptions, args, env, "simulate");
  if (positionals.length > 0) {
    throw new FeedlineError("USAGE", `simulate takes no arguments (got "${positionals[0]}")`);
  }
  // Compiled only to fail early, naming the flag, on a template serve would refuse too.
  compileTopics({ feed: values.feedTopic, feeds: values.feedsTopic, status: values.statusTopic });
  // Bad messages, drift and silence are feedline's own traffic (src/sim/traffic.ts).
  const own = (["badRatio", "driftRatio", "silentRatio"] as const).find((k) => values[k] > 0);
  if (values.format !== "feedline" && own) {
    throw new FeedlineError(
      "CONFIG_INVALID",
      `--${simulateOptions[own].flag} shapes feedline's own traffic; use it with --format ` +
        `feedline (got --format ${values.format})`,
    );
  }
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
    silentAfter: values.silentAfter ?? 30_000,
    databaseUrlFrom: databaseUrlFrom(sources.databaseUrl),
    connections: values.connections ?? deviceCount,
    clientIdPrefix: values.clientIdPrefix ??
      `feedline-sim-${crypto.randomUUID().slice(0, 8)}`,
  };
}

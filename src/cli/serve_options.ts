/**
 * `serve`'s options: the MQTT connection, queues and flushing, HTTP, capture and
 * shutdown, plus the shared groups, and `parseServeArgs`, which resolves them (flags,
 * then environment, then defaults) into serve's validated configuration. Declared once
 * here; `deno task docs` writes the README's table from them.
 */
import { z } from "zod";
import {
  databaseOptions,
  databaseUrlCheck,
  databaseUrlFrom,
  decodeOptions,
  decodeOptionsFrom,
  logOptions,
  partitionOptions,
  partitionSettingsOf,
  pgUrlSchema,
  processingOptions,
} from "./option_groups.ts";
import { mqttClientOptions, mqttTlsOf } from "./mqtt_options.ts";
import { operationsOptions } from "./operations_options.ts";
import { printConfigOptions } from "./secrets.ts";
import { option, resolveOptions, zs } from "./options.ts";
import type { Qos } from "../core/message.ts";
import { parseErrorsTopic } from "../core/topics.ts";
import { FeedlineError } from "../errors.ts";
import { sparkplugFilters } from "../core/sparkplug/topic.ts";
import { sparkplugOptions, sparkplugRebirthOption, sparkplugRouteOf } from "./sparkplug_options.ts";
import { databaseIdentity, defaultClientId, safeHostname } from "./client_id.ts";

export { defaultClientId } from "./client_id.ts";

/**
 * The MQTT connection of `serve`: the client options it shares with `replay --publish`
 * and `simulate` (src/cli/mqtt_options.ts), plus its session and subscription.
 */
export const mqttOptions = {
  ...mqttClientOptions,
  clientId: option({
    flag: "client-id",
    env: "MQTT_CLIENT_ID",
    schema: z.string().min(1).max(256).optional(),
    // The database's identity is its URL without password (src/cli/client_id.ts).
    defaultText: "feedline-<hostname>-<hash of data dir + database identity>",
    doc: "MQTT client id. Keep it stable: the broker keeps the session under it. Required " +
      "with --shared-group (one distinct id per instance).",
  }),
  qos: option({
    flag: "qos",
    env: "MQTT_QOS",
    schema: z.enum(["0", "1", "2"]).default("1").transform((v) => Number(v) as Qos),
    defaultText: "1",
    doc: "Subscription QoS. 1 and 2 are acknowledged only after commit.",
  }),
  sharedGroup: option({
    flag: "shared-group",
    env: "MQTT_SHARED_GROUP",
    schema: z.string().regex(/^[^/+#]+$/, "a name without / + #").optional(),
    defaultText: "none",
    doc: "Subscribe as $share/<group>/... so several instances split the traffic (MQTT 5).",
  }),
  sessionExpirySec: option({
    flag: "session-expiry",
    env: "MQTT_SESSION_EXPIRY",
    schema: zs.int(0, 4_294_967_295).default(86_400),
    defaultText: "86400",
    doc: "MQTT 5: seconds the broker keeps our session (and backlog) while we are away.",
  }),
};

/** `--queue-bytes` by default: with the batch bound, peak RSS ≤ 250 MB (docs/performance.md). */
export const DEFAULT_QUEUE_BYTES = 20 * 1024 * 1024;

/** Options of `serve`: the shared groups plus queues, HTTP, capture and shutdown. */
export const serveOptions = {
  ...mqttOptions,
  ackWindow: option({
    flag: "ack-window",
    env: "FEEDLINE_ACK_WINDOW",
    schema: zs.int(1, 65535).optional(),
    defaultText: "1000 on MQTT 5, 20 on MQTT 3.1.1",
    doc: "Most QoS 1/2 messages awaiting their ack: sent as Receive Maximum on MQTT 5, the " +
      "broker's in-flight window on 3.1.1 (Mosquitto's max_inflight_messages, default 20). " +
      "A batch is written when that many wait; a smaller window the broker keeps is learnt.",
  }),
  ackIdleMs: option({
    flag: "ack-idle-ms",
    env: "FEEDLINE_ACK_IDLE_MS",
    schema: zs.int(1, 60_000).default(20),
    defaultText: "20",
    doc: "Write a batch holding unacknowledged messages once nothing arrived for this long.",
  }),
  queueSize: option({
    flag: "queue-size",
    env: "FEEDLINE_QUEUE_SIZE",
    // ~1.5 KB of resident memory per held message (bench --phases hold); sized with
    // docs/performance.md, "Memory bounded by feedline itself".
    schema: zs.int(1, 10_000_000).default(20_000),
    defaultText: "20000",
    doc: "Feed data queue capacity. Full: serve stops reading the broker's socket until there " +
      "is room, so the backlog waits at the broker (QoS 0: see --qos0-when-full).",
  }),
  queueBytes: option({
    flag: "queue-bytes",
    env: "FEEDLINE_QUEUE_BYTES",
    // With --max-batch-bytes, what bounds serve's memory by the messages' size
    // (docs/performance.md, "Memory budget").
    schema: zs.int(65_536, 2_147_483_647).default(DEFAULT_QUEUE_BYTES),
    defaultText: `${DEFAULT_QUEUE_BYTES} (20 MiB)`,
    doc: "Feed data queue capacity in bytes: payload, topic and ~1 KB per message (the status " +
      "queue: a quarter of it). Full by bytes or by --queue-size, the same holding back applies.",
  }),
  qos0WhenFull: option({
    flag: "qos0-when-full",
    env: "FEEDLINE_QOS0_WHEN_FULL",
    schema: z.enum(["pause", "drop"]).default("pause"),
    defaultText: "pause",
    doc:
      "QoS 0 message finding the data queue full (by count or bytes): `pause` stops reading the socket as for " +
      "QoS 1 (the broker holds or drops by its own limits); `drop` drops and counts it here.",
  }),
  statusQueueSize: option({
    flag: "status-queue-size",
    env: "FEEDLINE_STATUS_QUEUE_SIZE",
    schema: zs.int(1, 10_000_000).default(20_000),
    defaultText: "20000",
    doc: "Device status queue capacity (written first).",
  }),
  embeddedMqttPort: option({
    flag: "embedded-mqtt-port",
    env: "FEEDLINE_EMBEDDED_MQTT_PORT",
    schema: zs.int(0, 65535).default(1883),
    defaultText: "1883",
    doc: "Port of the embedded broker on 127.0.0.1 (a free one if taken).",
  }),
  http: option({
    flag: "http",
    env: "HTTP_ADDR",
    schema: z.string().default("127.0.0.1:8080").refine(
      (v) => v === "off" || parseListenAddress(v) !== null,
      "host:port, :port or off",
    ),
    defaultText: "127.0.0.1:8080",
    doc: "Address of the status page (/), /metrics, /healthz and /readyz; `off` to disable. " +
      "Unset with an embedded broker or database: a free port if this one is taken (logged).",
  }),
  migrate: option({
    flag: "migrate",
    env: "FEEDLINE_MIGRATE",
    schema: zs.bool().default(true),
    defaultText: "on",
    doc:
      "Apply pending sql/ migrations at start (under an advisory lock, safe with many instances).",
    boolean: true,
  }),
  shutdownTimeoutMs: option({
    flag: "shutdown-timeout-ms",
    env: "FEEDLINE_SHUTDOWN_TIMEOUT_MS",
    schema: zs.int(0).default(30_000),
    defaultText: "30000",
    doc: "On SIGTERM, how long to keep trying to write what is queued before exiting.",
  }),
  capture: option({
    flag: "capture",
    env: "FEEDLINE_CAPTURE",
    schema: z.string().min(1).optional(),
    defaultText: "off",
    doc: "Append every received message to this file (JSON lines) as its batch commits, for " +
      "`replay`; see docs/replay.md.",
  }),
  reprocessOnRegister: option({
    flag: "reprocess-on-register",
    env: "FEEDLINE_REPROCESS_ON_REGISTER",
    schema: zs.bool().default(true),
    defaultText: "on",
    doc: "When a feed, device or tenant alias is inserted, process the rejects it fixes " +
      "(unknown_feed, unknown_device, unknown_tenant) again, in the background; see " +
      "docs/replay.md.",
    boolean: true,
  }),
  reprocessBatchSize: option({
    flag: "reprocess-batch-size",
    env: "FEEDLINE_REPROCESS_BATCH_SIZE",
    schema: zs.int(1, 100_000).default(500),
    defaultText: "500",
    doc: "Rejects re-processed per transaction (--reprocess-on-register).",
  }),
  reprocessRate: option({
    flag: "reprocess-rate",
    env: "FEEDLINE_REPROCESS_RATE",
    schema: zs.int(1).default(2000),
    defaultText: "2000",
    doc: "Most rejects re-processed per second (--reprocess-on-register), so live traffic " +
      "comes first.",
  }),
  captureMaxBytes: option({
    flag: "capture-max-bytes",
    env: "FEEDLINE_CAPTURE_MAX_BYTES",
    schema: zs.int(0).default(0),
    defaultText: "0 (never rotate)",
    doc: "Rotate the capture file at this size: it becomes FILE.1, FILE.2, ...",
  }),
  ...databaseOptions,
  listenDatabaseUrl: option({
    flag: "listen-database-url",
    env: "FEEDLINE_LISTEN_DATABASE_URL",
    schema: pgUrlSchema.optional(),
    check: databaseUrlCheck("DATABASE_URL's server"),
    defaultText: "DATABASE_URL (none with --db-pooler transaction)",
    doc: "A direct PostgreSQL connection (not through a pooler) for LISTEN: feed changes " +
      "reach the feed cache at once.",
    secret: "url",
  }),
  ...partitionOptions,
  partitionCheckIntervalMs: option({
    flag: "partition-check-interval-ms",
    env: "FEEDLINE_PARTITION_CHECK_INTERVAL_MS",
    schema: zs.int(1000, 86_400_000).default(60_000),
    defaultText: "60000",
    doc: "How often serve keeps partitions ahead, applies --retention and looks for " +
      "readings in the default partition.",
  }),
  rollupFoldIntervalMs: option({
    flag: "rollup-fold-interval-ms",
    env: "FEEDLINE_ROLLUP_FOLD_INTERVAL_MS",
    schema: zs.int(1000, 3_600_000).default(10_000),
    defaultText: "10000",
    doc: "With --rollups: how often serve folds closed buckets of the finer widths into the " +
      "coarser ones (docs/operations.md#rollups).",
  }),
  ...decodeOptions,
  ...processingOptions,
  ...sparkplugOptions,
  ...sparkplugRebirthOption,
  ...operationsOptions,
  ...logOptions,
  ...printConfigOptions,
};

/** Parses `host:port` (or `:port`, or a bare port). */
export function parseListenAddress(text: string): { hostname: string; port: number } | null {
  const m = /^(?:\[?([^\]]*?)\]?:)?(\d{1,5})$/.exec(text.trim());
  if (!m) return null;
  const port = Number(m[2]);
  if (port > 65535) return null;
  return { hostname: m[1] || "127.0.0.1", port };
}

/** `serve`'s configuration, validated. */
export type ServeConfig = ReturnType<typeof parseServeArgs>;

/** Parses flags and environment into a validated configuration. Pure. */
export function parseServeArgs(args: string[], env: Record<string, string | undefined>) {
  const { values, positionals, sources } = resolveOptions(serveOptions, args, env, "serve");
  if (positionals.length > 0) {
    throw new FeedlineError("USAGE", `serve takes no arguments (got "${positionals[0]}")`);
  }
  const decode = { ...decodeOptionsFrom(values, sources), sparkplug: sparkplugRouteOf(values) };
  const embeddedBroker = values.mqttUrl === undefined;
  const protocolVersion: 4 | 5 = embeddedBroker ? 4 : (values.mqttProtocol ?? "5") === "5" ? 5 : 4;
  if (values.sharedGroup && protocolVersion !== 5) {
    throw new FeedlineError(
      "CONFIG_INVALID",
      "--shared-group needs MQTT 5 (--mqtt-protocol 5 and a broker given by MQTT_URL)",
    );
  }
  if (values.sharedGroup && values.clientId === undefined) {
    throw new FeedlineError(
      "CONFIG_INVALID",
      "--shared-group needs --client-id (MQTT_CLIENT_ID): each instance of the group keeps " +
        "its share of the backlog in a session of its own, so give each a stable id no other " +
        `instance uses, e.g. --client-id feedline-${safeHostname()}-1`,
    );
  }
  return {
    ...values,
    decode,
    router: decode.router,
    embeddedBroker,
    protocolVersion,
    // MQTT 5 brokers must keep the Receive Maximum we send; a 3.1.1 broker's window is
    // its own setting, and Mosquitto's default is 20 (docs/scaling.md).
    ackWindow: values.ackWindow ?? (protocolVersion === 5 ? 1000 : 20),
    clientId: values.clientId ??
      defaultClientId(values.dataDir, undefined, databaseIdentity(values.databaseUrl, env)),
    autoRegister: values.autoRegister ?? values.databaseUrl === undefined,
    databaseUrlFrom: databaseUrlFrom(sources.databaseUrl),
    errorsTopic: parseErrorsTopic(values.errorsTopic, decode.router),
    alertsTopic: parseErrorsTopic(values.alertsTopic, decode.router, "--alerts-topic"),
    /** Who chose the HTTP address: a taken default moves to a free port (src/ops/http_listen.ts). */
    httpGivenBy: sources.http === "flag"
      ? "--http" as const
      : sources.http === "env"
      ? "HTTP_ADDR" as const
      : null,
  };
}

/** The MQTT source's connection settings from serve's configuration. */
export function mqttConnectionOf(config: ServeConfig, url: string) {
  return {
    url,
    username: config.mqttUsername,
    password: config.mqttPassword,
    clientId: config.clientId,
    protocolVersion: config.protocolVersion,
    qos: config.qos,
    filters: [
      ...config.router.filters,
      ...(config.decode.sparkplug ? sparkplugFilters(config.decode.sparkplug.namespace) : []),
    ],
    sharedGroup: config.sharedGroup,
    keepaliveSec: config.keepaliveSec,
    sessionExpirySec: config.sessionExpirySec,
    receiveMaximum: Math.max(config.ackWindow, 1),
    connectTimeoutMs: 10_000,
    tls: mqttTlsOf(config),
    qos0WhenFull: config.qos0WhenFull,
    // A payload serve rejects as too_large is read keeping what its reject row stores; a
    // capture keeps every payload whole.
    ...(config.capture === undefined
      ? { oversize: { above: config.decode.maxPayloadBytes, keep: config.rejectPayloadCap } }
      : {}),
  };
}

/** The pipeline's queue and flush settings from serve's configuration. */
export function batchingOf(config: ServeConfig) {
  const { batchSize, batchIntervalMs, queueSize, statusQueueSize, ackWindow, ackIdleMs } = config;
  const { maxBatchBytes, queueBytes } = config;
  return {
    batchSize,
    maxBatchBytes,
    queueBytes,
    keepsWholePayloads: config.capture !== undefined,
    batchIntervalMs,
    queueSize,
    statusQueueSize,
    ackWindow,
    ackIdleMs,
  };
}

/** What `openDatabase` (src/db/database.ts) needs from serve's configuration. */
export function databaseOf(config: ServeConfig) {
  return {
    url: config.databaseUrl,
    dataDir: config.dataDir,
    embeddedPort: config.embeddedDbPort,
    poolSize: config.dbPoolSize,
    migrate: config.migrate,
    ingest: true,
    pooler: config.dbPooler,
    listenUrl: config.listenDatabaseUrl,
    partitions: partitionSettingsOf(config),
    command: "feedline serve",
    urlFrom: config.databaseUrlFrom,
  };
}

/** serve's periodic database upkeep: reject retention and feed_values partitions. */
export function upkeepOf(config: ServeConfig) {
  return {
    rejects: { retentionHours: config.rejectsRetentionHours, maxRows: config.rejectsMaxRows },
    partitions: { ...partitionSettingsOf(config), intervalMs: config.partitionCheckIntervalMs },
  };
}

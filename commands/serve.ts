/**
 * `feedline serve`: subscribe to the broker, batch, write to PostgreSQL, acknowledge
 * after commit; metrics and health over HTTP. With no MQTT_URL it runs an embedded
 * broker, with no DATABASE_URL an embedded PostgreSQL: the zero-config default.
 */
import { z } from "zod";
import {
  databaseOptions,
  decodeOptions,
  decodeOptionsFrom,
  logOptions,
  processingOptions,
} from "../src/cli/option_groups.ts";
import { openDatabase } from "../src/db/database.ts";
import { CaptureWriter } from "../src/capture/writer.ts";
import { removeEndpoints, writeEndpoints } from "../src/embedded/endpoints.ts";
import { decode } from "../src/core/decode.ts";
import { startEmbeddedBroker } from "../src/embedded/services.ts";
import { FeedlineError } from "../src/errors.ts";
import { FeedCache } from "../src/ingest/feed_cache.ts";
import { listenForFeedChanges } from "../src/ingest/feed_notify.ts";
import { parseListenAddress, startHttpServer } from "../src/ops/http.ts";
import { accounting, addServeGauges, createIngestMetrics } from "../src/ingest/metrics.ts";
import { type Logger, redactUrl } from "../src/log.ts";
import type { Qos } from "../src/core/message.ts";
import { type MqttSource, startMqttSource } from "../src/mqtt/source.ts";
import { parseErrorsTopic } from "../src/ops/feedback.ts";
import { operationsOptions } from "../src/cli/ops_options.ts";
import { createOperations, createServeLogger } from "../src/ops/operations.ts";
import { formatOptionsHelp, option, resolveOptions, zs } from "../src/cli/options.ts";
import { Pipeline } from "../src/ingest/pipeline.ts";
import { startRejectRetention } from "../src/db/reject_retention.ts";
import { appliedSecretFiles, formatConfig, printConfigOptions } from "../src/cli/secrets.ts";

/** Options of `serve`: the shared groups plus MQTT, queues and HTTP. */
export const serveOptions = {
  mqttUrl: option({
    flag: "mqtt-url",
    env: "MQTT_URL",
    schema: zs.url(["mqtt:", "mqtts:", "tcp:", "ssl:", "ws:", "wss:"]).optional(),
    defaultText: "embedded broker on 127.0.0.1",
    doc: "Broker URL. Unset: an embedded MQTT 3.1.1 broker (aedes).",
    secret: true,
  }),
  mqttUsername: option({
    flag: "mqtt-username",
    env: "MQTT_USERNAME",
    schema: z.string().optional(),
    defaultText: "none",
    doc: "Broker user name.",
  }),
  mqttPassword: option({
    flag: "mqtt-password",
    env: "MQTT_PASSWORD",
    schema: z.string().optional(),
    defaultText: "none",
    doc: "Broker password (never logged). Prefer MQTT_PASSWORD or MQTT_PASSWORD_FILE: a flag " +
      "shows in ps.",
    secret: true,
  }),
  clientId: option({
    flag: "client-id",
    env: "MQTT_CLIENT_ID",
    schema: z.string().min(1).max(256).optional(),
    defaultText: "feedline-<hostname>",
    doc: "MQTT client id. Keep it stable: the broker keeps the session under it.",
  }),
  mqttProtocol: option({
    flag: "mqtt-protocol",
    env: "MQTT_PROTOCOL",
    schema: z.enum(["5", "3.1.1"]).optional(),
    defaultText: "5 (3.1.1 for the embedded broker)",
    doc: "MQTT protocol version.",
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
  keepaliveSec: option({
    flag: "keepalive",
    env: "MQTT_KEEPALIVE",
    schema: zs.int(0, 65535).default(30),
    defaultText: "30",
    doc: "MQTT keep-alive in seconds.",
  }),
  sessionExpirySec: option({
    flag: "session-expiry",
    env: "MQTT_SESSION_EXPIRY",
    schema: zs.int(0, 4_294_967_295).default(86_400),
    defaultText: "86400",
    doc: "MQTT 5: seconds the broker keeps our session (and backlog) while we are away.",
  }),
  ackWindow: option({
    flag: "ack-window",
    env: "FEEDLINE_ACK_WINDOW",
    schema: zs.int(1, 65535).default(20),
    defaultText: "20",
    doc: "Write a batch when this many QoS 1/2 messages await their ack: the broker's in-flight " +
      "window (Mosquitto's max_inflight_messages, default 20).",
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
    schema: zs.int(1, 10_000_000).default(100_000),
    defaultText: "100000",
    doc:
      "Feed data queue capacity. Full: QoS 1/2 wait at the broker, QoS 0 is dropped and counted.",
  }),
  statusQueueSize: option({
    flag: "status-queue-size",
    env: "FEEDLINE_STATUS_QUEUE_SIZE",
    schema: zs.int(1, 10_000_000).default(100_000),
    defaultText: "100000",
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
    doc: "Address of the status page (/), /metrics, /healthz and /readyz; `off` to disable.",
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
  captureMaxBytes: option({
    flag: "capture-max-bytes",
    env: "FEEDLINE_CAPTURE_MAX_BYTES",
    schema: zs.int(0).default(0),
    defaultText: "0 (never rotate)",
    doc: "Rotate the capture file at this size: it becomes FILE.1, FILE.2, ...",
  }),
  ...databaseOptions,
  ...decodeOptions,
  ...processingOptions,
  ...operationsOptions,
  ...logOptions,
  ...printConfigOptions,
};

/** `serve`'s configuration, validated. */
export type ServeConfig = ReturnType<typeof parseServeArgs>;

/** Parses flags and environment into a validated configuration. Pure. */
export function parseServeArgs(args: string[], env: Record<string, string | undefined>) {
  const { values, positionals } = resolveOptions(serveOptions, args, env, "serve");
  if (positionals.length > 0) {
    throw new FeedlineError("USAGE", `serve takes no arguments (got "${positionals[0]}")`);
  }
  const decode = decodeOptionsFrom(values);
  const embeddedBroker = values.mqttUrl === undefined;
  const protocolVersion: 4 | 5 = embeddedBroker ? 4 : (values.mqttProtocol ?? "5") === "5" ? 5 : 4;
  if (values.sharedGroup && protocolVersion !== 5) {
    throw new FeedlineError(
      "CONFIG_INVALID",
      "--shared-group needs MQTT 5 (--mqtt-protocol 5 and a broker given by MQTT_URL)",
    );
  }
  return {
    ...values,
    decode,
    router: decode.router,
    embeddedBroker,
    protocolVersion,
    clientId: values.clientId ?? `feedline-${safeHostname()}`,
    autoRegister: values.autoRegister ?? values.databaseUrl === undefined,
    errorsTopic: parseErrorsTopic(values.errorsTopic, decode.router),
  };
}

function safeHostname(): string {
  try {
    return Deno.hostname().replace(/[^A-Za-z0-9_.-]/g, "-");
  } catch {
    return "local";
  }
}

/** Help text of `serve`. */
export const help = `feedline serve — ingest MQTT messages into PostgreSQL

Usage: feedline serve [options]

With no MQTT_URL and no DATABASE_URL it runs an embedded broker and database:
try it with \`deno task serve\`, then publish to <user uuid>/<device>/feeds/<feed>.

Options (flag, [environment variable], default):
${formatOptionsHelp(serveOptions)}
`;

/** A running `serve`, for tests and for `run`. */
export interface RunningServe {
  config: ServeConfig;
  log: Logger;
  metrics: ReturnType<typeof createIngestMetrics>;
  pipeline: Pipeline;
  source: MqttSource;
  mqttUrl: string;
  httpPort: number | null;
  /** Stops reading, writes and acks what is queued, disconnects. */
  stop(): Promise<void>;
}

/** Starts everything `serve` runs; `stop()` shuts it down gracefully. */
export async function startServe(config: ServeConfig, log: Logger): Promise<RunningServe> {
  const closers: (() => Promise<void>)[] = [];
  const closeAll = async () => {
    for (const close of closers.reverse()) await close().catch(() => {});
  };
  try {
    const db = await openDatabase({
      url: config.databaseUrl,
      dataDir: config.dataDir,
      embeddedPort: config.embeddedDbPort,
      poolSize: config.dbPoolSize,
      migrate: config.migrate,
    });
    closers.push(() => db.close());
    log.info("database ready", { where: db.where });

    let mqttUrl = config.mqttUrl;
    if (!mqttUrl) {
      const broker = await startEmbeddedBroker({ port: config.embeddedMqttPort });
      closers.push(() => broker.close());
      mqttUrl = broker.url;
      if (broker.fellBack) {
        log.warn(`port ${config.embeddedMqttPort} is taken; the embedded broker uses another`, {
          url: broker.url,
        });
      }
      log.info("embedded MQTT broker (MQTT 3.1.1) listening", { url: broker.url });
    }
    if (config.autoRegister) {
      log.info("auto-register is on: unknown users, devices and feeds are created (dev mode)");
    }

    const capture = config.capture
      ? await CaptureWriter.open({ path: config.capture, maxBytes: config.captureMaxBytes, log })
      : null;
    if (capture) closers.push(() => capture.close());

    const feedCache = new FeedCache({ ttlMs: config.feedCacheTtlMs });
    // Feed changes reach the cache at once through LISTEN (sql/002); the embedded PGlite
    // serves all connections from one backend, where LISTEN cannot work, so it relies on
    // the TTL.
    if (!db.embedded && config.feedCacheTtlMs > 0) {
      await listenForFeedChanges(db.sql, feedCache, log);
    }

    const stopRetention = startRejectRetention(db.sql, {
      retentionHours: config.rejectsRetentionHours,
      maxRows: config.rejectsMaxRows,
    }, log);
    closers.push(stopRetention);

    const metrics = createIngestMetrics();
    const ops = createOperations({ config, sql: db.sql, metrics, log });
    closers.push(() => ops.close());
    const pipeline = new Pipeline({
      sql: db.sql,
      processor: {
        autoRegister: config.autoRegister,
        rejectPayloadCap: config.rejectPayloadCap,
        feedCache,
      },
      batchSize: config.batchSize,
      batchIntervalMs: config.batchIntervalMs,
      queueSize: config.queueSize,
      statusQueueSize: config.statusQueueSize,
      ackWindow: config.ackWindow,
      ackIdleMs: config.ackIdleMs,
      log,
      metrics,
      onCommitted: capture
        ? async (items, result) => {
          await capture.committed(items.map((item) => item.pending.inbound));
          ops.onCommitted(items, result);
        }
        : ops.onCommitted,
    });
    pipeline.start();
    closers.push(async () => {
      await pipeline.drain(0);
    });

    const source = await startMqttSource({
      url: mqttUrl,
      username: config.mqttUsername,
      password: config.mqttPassword,
      clientId: config.clientId,
      protocolVersion: config.protocolVersion,
      qos: config.qos,
      filters: config.router.filters,
      sharedGroup: config.sharedGroup,
      keepaliveSec: config.keepaliveSec,
      sessionExpirySec: config.sessionExpirySec,
      receiveMaximum: Math.max(config.ackWindow, 1),
      connectTimeoutMs: 10_000,
      log,
      deliver(inbound, ack) {
        // Under overload the data queue is full for most QoS 0 messages: don't parse a
        // payload that will be dropped (status messages have a queue of their own).
        if (
          !ack && pipeline.isFull("readings") &&
          config.router.match(inbound.topic)?.kind !== "status"
        ) return false;
        const pending = { inbound, decoded: decode(inbound, config.decode) };
        if (!pipeline.offer(pending, ack)) return false;
        metrics.received.inc();
        return true;
      },
      waitForRoom: () => pipeline.waitForRoom(),
      onDrop(inbound) {
        capture?.dropped(inbound);
        metrics.received.inc();
        metrics.dropped.inc({ reason: "queue_full" });
      },
      onSessionResumed(isStale) {
        // The broker redelivers these; writing the old copies too would store twice.
        const n = pipeline.discardQueued((item) => item.ack !== null && isStale(item.ack));
        if (n > 0) {
          metrics.discarded.inc({ reason: "redelivered" }, n);
          log.info("session resumed; dropped queued copies the broker redelivers", { messages: n });
        }
      },
    });
    closers.push(() => source.close());
    ops.attach(pipeline, source);

    addServeGauges(metrics, {
      pipeline,
      brokerUp: () => source.subscribed,
      databaseUp: () => ops.databaseUp(),
      captureErrors: capture ? () => capture.errors : null,
    });

    let httpPort: number | null = null;
    if (config.http !== "off") {
      const addr = parseListenAddress(config.http)!;
      const http = startHttpServer({
        ...addr,
        metrics: () => metrics.registry.render(),
        readiness: ops.readiness,
        routes: ops.routes,
        log,
      });
      httpPort = http.port;
      closers.push(() => http.close());
      log.info("http listening", {
        status: `http://${addr.hostname}:${http.port}/`,
        metrics: `http://${addr.hostname}:${http.port}/metrics`,
      });
    }

    if (config.embeddedBroker || db.embedded) {
      // Other commands on this machine (simulate, replay --publish) find the embedded
      // services here when no MQTT_URL / DATABASE_URL is given.
      await writeEndpoints(config.dataDir, {
        mqttUrl,
        databaseUrl: db.embedded ? db.url : undefined,
        httpPort,
        pid: Deno.pid,
      });
      closers.push(() => removeEndpoints(config.dataDir));
    }

    let stopping: Promise<void> | null = null;
    return {
      config,
      log,
      metrics,
      pipeline,
      source,
      mqttUrl,
      httpPort,
      stop() {
        stopping ??= (async () => {
          source.stopReading();
          const left = await pipeline.drain(config.shutdownTimeoutMs);
          const { balanced: _, ...terms } = accounting(metrics, pipeline.queued, pipeline.inFlight);
          log.info("stopped", {
            ...terms,
            unwritten: left,
            readingsStored: metrics.stored.total(),
          });
          await closeAll();
        })();
        return stopping;
      },
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

/** Runs `serve` until SIGINT or SIGTERM. */
export async function run(args: string[]): Promise<void> {
  const config = parseServeArgs(args, Deno.env.toObject());
  if (config.printConfig) {
    console.log(
      formatConfig(serveOptions, args, Deno.env.toObject(), appliedSecretFiles(), "serve"),
    );
    return;
  }
  const log = createServeLogger(config);
  log.info("feedline serve starting", {
    broker: config.mqttUrl ? redactUrl(config.mqttUrl) : "embedded",
    database: config.databaseUrl ? redactUrl(config.databaseUrl) : "embedded",
  });
  // Signals are watched from the start: a SIGTERM while starting up still ends cleanly.
  let signalled!: () => void;
  const signal = new Promise<void>((resolve) => signalled = resolve);
  const onSignal = () => {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    signalled();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const running = await startServe(config, log);
  if (config.embeddedBroker) {
    log.info(
      `try: mosquitto_pub -h 127.0.0.1 -p ${new URL(running.mqttUrl).port} ` +
        `-t 6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f/dev1/feeds/temperature -m 21.5`,
    );
  }
  await signal;
  log.info("signal received; flushing and stopping");
  await running.stop();
}

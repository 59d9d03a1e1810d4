/**
 * `feedline serve`: subscribe to the broker, batch, write to PostgreSQL, acknowledge
 * after commit; metrics and health over HTTP. With no MQTT_URL it runs an embedded
 * broker, with no DATABASE_URL an embedded PostgreSQL: the zero-config default.
 */
import { decodeOptionsFrom } from "../src/cli/option_groups.ts";
import { parseListenAddress, serveOptions } from "../src/cli/serve_options.ts";
import { formatOptionsHelp, resolveOptions } from "../src/cli/options.ts";
import { exitCodeOf, listenForStopSignals } from "../src/cli/shutdown_signals.ts";
import { CaptureWriter } from "../src/capture/writer.ts";
import type { decode } from "../src/core/decode.ts";
import { openDatabase } from "../src/db/database.ts";
import { startRejectRetention } from "../src/db/reject_retention.ts";
import { removeEndpoints, writeEndpoints } from "../src/embedded/endpoints.ts";
import { startEmbeddedBroker } from "../src/embedded/services.ts";
import { FeedlineError } from "../src/errors.ts";
import { Accounting } from "../src/ingest/accounting.ts";
import { FeedCache } from "../src/ingest/feed_cache.ts";
import { listenForFeedChanges } from "../src/ingest/feed_notify.ts";
import { createIntake } from "../src/ingest/intake.ts";
import { addServeGauges, createIngestMetrics } from "../src/ingest/metrics.ts";
import { Pipeline } from "../src/ingest/pipeline.ts";
import { processBatch } from "../src/ingest/processor.ts";
import { type Logger, redactUrl } from "../src/log.ts";
import { type MqttSource, startMqttSource } from "../src/mqtt/source.ts";
import { parseErrorsTopic } from "../src/ops/feedback.ts";
import { listenHttp } from "../src/ops/http_listen.ts";
import { createOperations, createServeLogger, type Operations } from "../src/ops/operations.ts";
import { installProcessGuard } from "../src/process_guard.ts";

/** `serve`'s configuration, validated. */
export type ServeConfig = ReturnType<typeof parseServeArgs>;

/** Parses flags and environment into a validated configuration. Pure. */
export function parseServeArgs(args: string[], env: Record<string, string | undefined>) {
  const { values, positionals, sources } = resolveOptions(serveOptions, args, env, "serve");
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
    /** Who chose the HTTP address: a taken default moves to a free port (src/ops/http_listen.ts). */
    httpGivenBy: sources.http === "flag"
      ? "--http" as const
      : sources.http === "env"
      ? "HTTP_ADDR" as const
      : null,
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

/** Longest a single closer (broker client, database pool, ...) may take at shutdown. */
const CLOSE_TIMEOUT_MS = 3000;
/** Replaceable parts of `startServe`, for tests. */
export interface ServeHooks {
  /** The decoder (default: src/core/decode.ts). */
  decode?: typeof decode;
}

/** Starts everything `serve` runs; `stop()` shuts it down gracefully. */
export async function startServe(
  config: ServeConfig,
  log: Logger,
  hooks: ServeHooks = {},
): Promise<RunningServe> {
  const closers: (() => Promise<void>)[] = [];
  // Each closer gets a bounded time: shutdown must keep --shutdown-timeout-ms even when
  // the broker or the database does not answer.
  const closeAll = async () => {
    for (const close of closers.reverse()) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), CLOSE_TIMEOUT_MS);
      });
      const result = await Promise.race([close().catch(() => {}), timeout]);
      clearTimeout(timer);
      if (result === "timeout") log.warn("a component did not close in time; moving on");
    }
  };
  // Set when shutdown gave up on a batch: the pool then closes without waiting for it.
  let abandoned = false;
  try {
    const db = await openDatabase({
      url: config.databaseUrl,
      dataDir: config.dataDir,
      embeddedPort: config.embeddedDbPort,
      poolSize: config.dbPoolSize,
      migrate: config.migrate,
      command: "feedline serve",
    });
    closers.push(() => db.close(abandoned ? 0 : 5));
    if (db.fellBack) {
      log.warn(`port ${config.embeddedDbPort} is taken; the embedded database uses another`, {
        url: db.url,
      });
    }
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
    if (capture) {
      closers.push(() => capture.close());
      log.info(`capturing to ${config.capture}`, {
        file: config.capture,
        rotateAtBytes: config.captureMaxBytes || null,
      });
    }

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
    const accounting = new Accounting(metrics);
    const processor = {
      autoRegister: config.autoRegister,
      rejectPayloadCap: config.rejectPayloadCap,
      feedCache,
    };
    const pipeline = new Pipeline({
      write: (batch) => processBatch(db.sql, batch, processor),
      batchSize: config.batchSize,
      batchIntervalMs: config.batchIntervalMs,
      queueSize: config.queueSize,
      statusQueueSize: config.statusQueueSize,
      ackWindow: config.ackWindow,
      ackIdleMs: config.ackIdleMs,
      log,
      metrics,
      accounting,
    });
    closers.push(async () => {
      await pipeline.drain(0);
    });
    if (capture) {
      pipeline.onCommit((items) => capture.committed(items.map((i) => i.pending.inbound)));
    }

    let ops: Operations | null = null;
    const intake = createIntake({
      pipeline,
      accounting,
      decode: config.decode,
      decoder: hooks.decode,
      onQueueFull: (inbound) => capture?.dropped(inbound),
      onInternalError: (topic, error) => ops?.noteInternalError(topic, error),
      onDiscarded: (messages) =>
        log.info("session resumed; dropped queued copies the broker redelivers", { messages }),
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
      ...intake,
    });
    closers.push(() => source.close());
    ops = createOperations({ config, sql: db.sql, metrics, log, pipeline, source });
    closers.push(() => ops!.close());
    pipeline.onCommit(ops.onCommitted);
    // The batch loop starts once every listener is in place; what arrived meanwhile waits
    // in the queues.
    pipeline.start();

    addServeGauges(metrics, {
      pipeline,
      brokerUp: () => source.subscribed,
      databaseUp: () => ops.databaseUp(),
      captureErrors: capture ? () => capture.errors : null,
    });

    let httpPort: number | null = null;
    if (config.http !== "off") {
      const addr = parseListenAddress(config.http)!;
      const http = listenHttp({
        ...addr,
        metrics: () => metrics.registry.render(),
        readiness: ops.readiness,
        routes: ops.routes,
        log,
      }, {
        givenBy: config.httpGivenBy,
        fallBack: config.embeddedBroker || db.embedded,
      });
      httpPort = http.port;
      closers.push(() => http.close());
      if (http.fellBack) {
        log.warn(`port ${addr.port} is taken; the status page and /metrics use another`, {
          url: `http://${addr.hostname}:${http.port}/`,
        });
      }
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
          if (left > 0) {
            abandoned = true;
            log.warn("shutdown timeout reached; left unwritten messages", {
              messages: left,
              shutdown_timeout_ms: config.shutdownTimeoutMs,
            });
          }
          const { balanced: _, ...terms } = accounting.terms(pipeline.queued, pipeline.inFlight);
          const byReason = accounting.byReason();
          log.info("stopped", {
            ...terms,
            unwritten: left,
            readingsStored: metrics.stored.total(),
            droppedByReason: byReason.dropped,
            discardedByReason: byReason.discarded,
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
  const log = createServeLogger(config);
  log.info("feedline serve starting", {
    broker: config.mqttUrl ? redactUrl(config.mqttUrl) : "embedded",
    database: config.databaseUrl ? redactUrl(config.databaseUrl) : "embedded",
  });
  // Signals are watched from the start until the end: a SIGTERM while starting up still
  // ends cleanly, the copy of a signal that `deno task` forwards is ignored, and a
  // deliberate second one exits at once (src/cli/shutdown_signals.ts).
  let signalled!: () => void;
  const signal = new Promise<void>((resolve) => signalled = resolve);
  let running: RunningServe | null = null;
  const stopListening = listenForStopSignals({
    onFirst: () => signalled(),
    onSecond(sig) {
      const p = running?.pipeline;
      log.warn("second signal: exiting now; queued messages are left unwritten", {
        signal: sig,
        unwritten: p ? p.queued + p.inFlight : null,
        note: "QoS 1/2 ones stay with the broker and are redelivered; QoS 0 ones are lost",
      });
      Deno.exit(exitCodeOf(sig));
    },
  });
  try {
    running = await startServe(config, log);
  } catch (error) {
    stopListening();
    throw error;
  }
  // From here on, an error nobody caught is logged and counted, not fatal
  // (src/process_guard.ts says why).
  const removeGuard = installProcessGuard(log, running.metrics.uncaught);
  if (config.embeddedBroker) {
    log.info(
      `try: mosquitto_pub -h 127.0.0.1 -p ${new URL(running.mqttUrl).port} ` +
        `-t 6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f/dev1/feeds/temperature -m 21.5`,
    );
  }
  await signal;
  log.info("signal received; flushing and stopping (a second Ctrl-C exits without waiting)");
  await running.stop();
  stopListening();
  removeGuard();
  // Everything is closed; should a socket or timer still hold the event loop (a hung
  // database connection), exit all the same: the shutdown timeout is a promise.
  const exit = setTimeout(() => {
    log.warn("still busy after stopping; exiting");
    Deno.exit(Deno.exitCode ?? 0);
  }, 1000);
  Deno.unrefTimer(exit);
}

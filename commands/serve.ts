/**
 * `feedline serve`: subscribe to the broker, batch, write to PostgreSQL, acknowledge
 * after commit; metrics and health over HTTP. With no MQTT_URL it runs an embedded
 * broker, with no DATABASE_URL an embedded PostgreSQL: the zero-config default.
 */
import {
  batchingOf,
  databaseOf,
  mqttConnectionOf,
  parseListenAddress,
  parseServeArgs,
  type ServeConfig,
  upkeepOf,
} from "../src/cli/serve_options.ts";
import { serveHelp } from "../src/cli/serve_help.ts";
import { formatServeConfig } from "../src/cli/serve_print.ts";
import { runUntilStopSignal } from "../src/cli/shutdown_signals.ts";
import { Closers } from "../src/closers.ts";
import { CaptureWriter } from "../src/capture/writer.ts";
import type { Decoder } from "../src/core/decode.ts";
import { openDatabase } from "../src/db/database.ts";
import { leaseLane } from "../src/db/ingest_lanes.ts";
import { startPartitionUpkeep } from "../src/db/partitions.ts";
import { startRejectRetention } from "../src/db/reject_retention.ts";
import { prepareRollupsAtStart, startRollupFolds } from "../src/db/rollup_folds.ts";
import { removeEndpoints, writeEndpoints } from "../src/embedded/endpoints.ts";
import { startEmbeddedBroker } from "../src/embedded/services.ts";
import { httpAddressChoice, rememberedPorts } from "../src/embedded/remembered_ports.ts";
import { assembleIngest, processorOptionsOf, reprocessOnRegister } from "../src/ingest/assembly.ts";
import { createFeedCache } from "../src/ingest/feed_notify.ts";
import { resolveSparkplugTenant } from "../src/ingest/sparkplug_tenant.ts";
import { createIngestMetrics } from "../src/ingest/metrics.ts";
import { tenantAliasListener, tenantCacheFor } from "../src/ingest/tenant_cache.ts";
import type { Pipeline } from "../src/ingest/pipeline.ts";
import { type Logger, redactUrl } from "../src/log.ts";
import { type MqttSource, startMqttSource } from "../src/mqtt/source.ts";
import { createCommitReports } from "../src/ops/commit_reports.ts";
import { startOpsHttp } from "../src/ops/http_listen.ts";
import { createOperations } from "../src/ops/operations.ts";
import { readyOnce } from "../src/ops/ready_line.ts";
import { createServeLogger } from "../src/ops/serve_logger.ts";
import { installProcessGuard } from "../src/process_guard.ts";

export { parseServeArgs, type ServeConfig };

/** Help text of `serve`. */
export const help = serveHelp;

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

/** Replaceable parts of `startServe`, for tests: the decoder (default: src/core/decode.ts). */
export interface ServeHooks {
  decode?: Decoder;
}

/** Starts everything `serve` runs; `stop()` shuts it down gracefully. */
export async function startServe(
  config: ServeConfig,
  log: Logger,
  hooks: ServeHooks = {},
): Promise<RunningServe> {
  const closers = new Closers(log); // each closer gets at most 3 s
  // Set when shutdown gave up on a batch: the pool then closes without waiting for it.
  let abandoned = false;
  try {
    // Everything that can refuse the start comes before serve subscribes, and the batch
    // loop starts last (docs/operations.md, "Starting"): a refused start has committed
    // nothing, and what waits in the broker session is left for the next start.
    const metrics = createIngestMetrics();
    const http = config.http === "off" ? null : startOpsHttp(
      { ...parseListenAddress(config.http)!, metrics: () => metrics.registry.render(), log },
      httpAddressChoice(config), // a taken default port may move (src/ops/http_listen.ts)
      log,
    );
    if (http) closers.push("the HTTP server", () => http.close());

    const db = await openDatabase({ ...databaseOf(config), onTransactionPooler: log.warn });
    closers.push("the database pool", () => db.close(abandoned ? 0 : 5));
    const moved = `port ${config.embeddedDbPort} is taken; the embedded database uses another`;
    if (db.fellBack) log.warn(moved, { url: db.url, ...db.portMemory });
    log.info("database ready", { where: db.where, partitions_created: db.partitions?.created });
    // Before the first batch: the batches write coarse widths by these watermarks.
    if (config.rollups) await prepareRollupsAtStart(db.sql, config.rollups, db.where, log);
    const { sparkplug } = config.decode; // its tenant is looked up once, here
    if (sparkplug) await resolveSparkplugTenant(db.sql, config.sparkplugTenant!, sparkplug, config);

    let mqttUrl = config.mqttUrl;
    if (!mqttUrl) {
      const { embeddedMqttPort: port, dataDir } = config;
      const broker = await startEmbeddedBroker({ port, log, dataDir });
      closers.push("the embedded broker", () => broker.close());
      mqttUrl = broker.url;
    }
    if (config.autoRegister) {
      log.info("auto-register is on: unknown users, devices and feeds are created (dev mode)");
    }

    const capture = config.capture
      ? await CaptureWriter.open({ path: config.capture, maxBytes: config.captureMaxBytes, log })
      : null;
    if (capture) closers.push("the capture file", () => capture.close());

    const cacheSize = { ttlMs: config.feedCacheTtlMs, maxEntries: config.feedCacheSize };
    // Tenant aliases of a mappings file (sql/008) are cached and invalidated like feeds.
    const tenantCache = tenantCacheFor(cacheSize);
    const also = config.decode.mappings ? [tenantAliasListener(tenantCache)] : [];
    const feeds = await createFeedCache({ ...cacheSize, db, also, metrics }, log);
    closers.push("the feed cache", () => feeds.close());
    if (config.mappings) {
      log.info("mappings", { file: config.mappings, filters: config.router.filters });
    }
    const processor = processorOptionsOf(config, {
      ...feeds.caches,
      tenantCache,
      onCarefulRewrite: () => metrics.carefulRewrites.inc(),
    });
    const reports = createCommitReports({ ...config, metrics, log });
    closers.push("the flood warnings", () => reports.close());
    const { pipeline, intake } = assembleIngest({
      sql: db.sql,
      processor,
      batching: batchingOf(config),
      decode: config.decode,
      decoder: hooks.decode,
      log,
      metrics,
      onQueueFull: (inbound) => capture?.dropped(inbound),
      onInternalError: reports.noteInternalError,
    });
    // Before `start()` this writes nothing: a start refused after subscribing leaves what
    // arrived unacknowledged with the broker, which redelivers it to the next start.
    closers.push("the pipeline", async () => {
      await pipeline.drain(0);
    });
    if (capture) {
      pipeline.onCommit((items) => capture.committed(items.map((i) => i.pending.inbound)));
    }

    // Instances of a group stamp receive times in lanes of their own (src/clock.ts),
    // leased before subscribing.
    if (config.sharedGroup) {
      const lane = await leaseLane(db.sql, { holder: config.clientId, log });
      closers.push("the clock lane", lane.release);
      processor.inTransaction = lane.recordStamps; // its mark commits with each batch
    }
    const live = () => ({ mqttUrl, httpPort: http?.port ?? null, database: db.where });
    const ready = readyOnce(log, config, live);
    const source = await startMqttSource({
      ...{ ...mqttConnectionOf(config, mqttUrl), log, ...intake },
      onSessionLost: () => metrics.sessionsLost.inc(),
      onSubscribed: ready.subscribed,
    });
    closers.push("the MQTT connection", () => source.close());
    const ops = createOperations({
      ...{ config, sql: db.sql, metrics, log, pipeline, source, reports },
      captureErrors: capture ? () => capture.errors : undefined,
    });
    closers.push("the operations timers", () => ops.close());
    pipeline.onCommit(ops.onCommitted);
    http?.wire(ops);
    const httpPort = http?.port ?? null;

    if (config.embeddedBroker || db.embedded) {
      // Other commands on this machine (simulate, replay --publish) find the embedded
      // services here when no MQTT_URL / DATABASE_URL is given; written once subscribed,
      // so that what they publish has a subscriber.
      await writeEndpoints(config.dataDir, {
        mqttUrl,
        databaseUrl: db.embedded ? db.url : undefined,
        httpPort,
        pid: Deno.pid,
        autoRegister: config.autoRegister,
      });
      closers.push("the endpoints file", () => removeEndpoints(config.dataDir));
    }

    const upkeep = upkeepOf(config);
    closers.push("reject retention", startRejectRetention(db.sql, upkeep.rejects, log));
    closers.push(
      "partition upkeep",
      startPartitionUpkeep(db.sql, upkeep.partitions, log, metrics.registry),
    );
    const folds = startRollupFolds(db.sql, config, log, metrics.registry); // null: no coarse width
    if (folds) closers.push("the rollup fold", folds);
    const reprocess = await reprocessOnRegister(config, { db, processor, metrics, log, closers });
    // Nothing below can refuse the start. The batch loop starts once every listener is in
    // place; what arrived meanwhile waits in the queues.
    pipeline.start();
    ready.started();

    let stopping: Promise<void> | null = null;
    const stop = () =>
      stopping ??= (async () => {
        await Promise.all([source.stopReading(), reprocess?.close()]); // before the final line
        const left = await pipeline.shutdown(config.shutdownTimeoutMs, reports.close);
        abandoned = left > 0;
        await closers.closeAll();
      })();
    return { config, log, metrics, pipeline, source, mqttUrl, httpPort, stop };
  } catch (error) {
    await closers.closeAll();
    throw error;
  }
}

/** Runs `serve` until SIGINT or SIGTERM (src/cli/shutdown_signals.ts). */
export async function run(args: string[]): Promise<void> {
  const env = Deno.env.toObject();
  const config = parseServeArgs(args, env);
  if (config.printConfig) {
    return console.log(formatServeConfig(args, env, config, rememberedPorts(config.dataDir)));
  }
  const log = createServeLogger(config);
  log.info("feedline serve starting", {
    client_id: config.clientId,
    broker: config.mqttUrl ? redactUrl(config.mqttUrl) : "embedded",
    database: config.databaseUrl ? redactUrl(config.databaseUrl) : "embedded",
  });
  await runUntilStopSignal<RunningServe>({
    start: () => startServe(config, log),
    stop: (running) => running.stop(),
    onSecondSignal(signal, running) {
      const p = running?.pipeline;
      log.warn("second signal: exiting now; queued messages are left unwritten", {
        signal,
        unwritten: p ? p.queued + p.inFlight : null,
        note: "QoS 1/2 ones stay with the broker and are redelivered; QoS 0 ones are lost",
      });
    },
    started(running) {
      // From here on, an error nobody caught is logged and counted, not fatal
      // (src/process_guard.ts says why).
      return installProcessGuard(log, running.metrics.uncaught);
    },
    onStopping: () =>
      log.info("signal received; flushing and stopping (a second Ctrl-C exits without waiting)"),
  });
}

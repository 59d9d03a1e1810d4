/**
 * `feedline replay FILE...`: feeds captured messages (serve --capture files, gzip or not,
 * `mosquitto_sub -v` output, stdin) through the same decode and processor as `serve`;
 * or re-processes `ingest_rejects` (--rejects); or re-publishes a capture to a broker
 * (--publish). See docs/replay.md.
 */
import { moveLastValues } from "../src/db/last_values.ts";
import { foldRollups, prepareRollupsAtStart } from "../src/db/rollup_folds.ts";
import type { MqttClient } from "mqtt";
import { type ReadBadLine, readCaptures, statInputs } from "../src/capture/reader.ts";
import { parseReplayArgs, type ReplayConfig, replayOptions } from "../src/cli/replay_options.ts";
import { formatOptionsHelp } from "../src/cli/options.ts";
import { mqttTlsOf } from "../src/cli/mqtt_options.ts";
import type { Inbound } from "../src/core/message.ts";
import { decode, lastReceiveOffsetUs } from "../src/core/decode.ts";
import { openCommandDatabase } from "../src/db/command_database.ts";
import { brokerOrRunningServe } from "../src/embedded/endpoints.ts";
import { FeedlineError } from "../src/errors.ts";
import { processorOptionsOf } from "../src/ingest/assembly.ts";
import { resolveSparkplugTenant } from "../src/ingest/sparkplug_tenant.ts";
import { connectClient } from "../src/mqtt/connect.ts";
import { replayIntoDatabase } from "../src/replay/into_database.ts";
import { Progress, type ProgressMode } from "../src/replay/progress.ts";
import { republish } from "../src/replay/publish.ts";
import { countRejects, replayRejects } from "../src/replay/rejects.ts";
import {
  formatSummary,
  newTotals,
  peakRssBytes,
  type ReplayTotals,
  summaryJson,
} from "../src/replay/totals.ts";

export { parseReplayArgs, type ReplayConfig, replayOptions };

/** Help text of `replay`. */
export const help = `feedline replay — feed captured messages through the processor again

Usage: feedline replay [options] FILE...     (FILE may be gzip-compressed; - reads stdin)
       feedline replay --rejects [--reason R,...] [options]
       feedline replay --publish [--speed N|max] [options] FILE...

Reads capture files written by 'serve --capture' (JSON lines) or 'mosquitto_sub -v' output,
and writes them to the database exactly as serve would. Replaying a capture twice changes
nothing the second time. 'mosquitto_sub -v' output has no receive times: its messages
without a device timestamp are stored again on every replay (replay warns how many).
A new database rejects unknown users, devices and feeds: register them, or --auto-register;
rejects stay in ingest_rejects until 'replay --rejects'. See docs/replay.md.

Options (flag, [environment variable], default):
${formatOptionsHelp(replayOptions)}
`;

/** Where replay writes: the summary to `out`, progress and bad lines to `err`. */
export interface ReplayIo {
  out: (text: string) => void;
  err: (text: string) => void;
  /** Whether `err` is a terminal (for the progress bar). */
  errIsTerminal: boolean;
  stdin?: ReadableStream<Uint8Array>;
}

const encoder = new TextEncoder();
const defaultIo: ReplayIo = {
  out: (text) => Deno.stdout.writeSync(encoder.encode(text)),
  err: (text) => Deno.stderr.writeSync(encoder.encode(text)),
  errIsTerminal: Deno.stderr.isTerminal(),
};

// Bad lines beyond this many are counted but not printed one by one.
const BAD_LINES_SHOWN = 20;

/** Runs a replay and returns its totals; prints the summary. */
export async function runReplay(config: ReplayConfig, io: ReplayIo = defaultIo): Promise<
  ReplayTotals
> {
  const started = performance.now();
  const totals = newTotals(config.mode, config.dryRun);
  const inputBytes = config.rejects ? 0 : await statInputs(config.files);
  let bytesRead = 0;
  const mode: ProgressMode = config.progress === "auto"
    ? (io.errIsTerminal ? "bar" : "lines")
    : config.progress;

  let badShown = 0;
  const onBadLine = (bad: ReadBadLine) => {
    if (++badShown <= BAD_LINES_SHOWN) io.err(`${bad.source}:${bad.line}: ${bad.error}\n`);
  };
  const accept = (m: Inbound) =>
    (config.sinceUs === null || m.receivedAtUs >= config.sinceUs) &&
    (config.untilUs === null || m.receivedAtUs < config.untilUs) &&
    (config.topicMatches === null || config.topicMatches(m.topic));
  const read = () =>
    readCaptures(config.files, {
      format: config.format,
      stdin: io.stdin,
      onBytes: (n) => bytesRead += n,
      receiveOffsetOf: (m) => lastReceiveOffsetUs(decode(m, config.decode)),
    });

  let progress: Progress | null = null;
  if (config.mode === "publish") {
    progress = new Progress({ mode, total: inputBytes || null, write: io.err });
    const client = await connectPublisher(config);
    try {
      await republish(read(), {
        client,
        speed: config.speed,
        accept,
        strict: config.strict,
        onBadLine,
        onProgress: () => progress?.update(bytesRead, totals.processed),
      }, totals);
    } finally {
      await new Promise<void>((resolve) => client.end(false, {}, () => resolve()));
    }
  } else {
    const db = await openReplayDatabase(config);
    try {
      // As in serve: dev mode with the embedded database (also a running serve's).
      const autoRegister = config.autoRegister ?? config.databaseUrl === undefined;
      const processor = processorOptionsOf({ ...config, autoRegister });
      if (config.rollups && !config.dryRun) {
        await prepareRollupsAtStart(db.sql, config.rollups, db.where, {
          info: () => {},
          warn: (text) => io.err(`warning: ${text}\n`),
        });
      }
      if (config.decode.sparkplug) {
        const tenant = config.sparkplugTenant!;
        const register = autoRegister && !config.dryRun;
        await resolveSparkplugTenant(db.sql, tenant, config.decode.sparkplug, {
          autoRegister: register,
        });
      }
      if (config.rejects) {
        const rejectOpts = {
          sql: db.sql,
          decode: config.decode,
          processor,
          batchSize: config.batchSize,
          reasons: config.reasons,
          sinceUs: config.sinceUs,
          untilUs: config.untilUs,
          acceptTopic: (topic: string) => config.topicMatches?.(topic) ?? true,
        };
        const { replayable } = await countRejects(rejectOpts);
        progress = new Progress({ mode, total: replayable, write: io.err });
        await replayRejects({
          ...rejectOpts,
          onProgress: (done) => progress?.update(done, totals.processed),
        }, totals);
      } else {
        progress = new Progress({ mode, total: inputBytes || null, write: io.err });
        await replayIntoDatabase(read(), {
          sql: db.sql,
          decode: config.decode,
          processor,
          batchSize: config.batchSize,
          accept,
          strict: config.strict,
          onBadLine,
          onProgress: () => progress?.update(bytesRead, totals.processed),
          onWarning: (text) => io.err(`warning: ${text}\n`),
        }, totals);
      }
      // Each replayed feed's last value, moved now (a serve running alongside moves them too).
      if (!config.dryRun) await moveLastValues(db.sql);
      // Buckets that closed while replaying (a serve running alongside folds them too).
      if (config.rollups && config.rollups.length > 1 && !config.dryRun) {
        await foldRollups(db.sql, { maxSteps: Number.MAX_SAFE_INTEGER });
      }
    } finally {
      await db.close();
    }
  }
  progress?.finish();
  if (badShown > BAD_LINES_SHOWN) {
    io.err(`(${badShown - BAD_LINES_SHOWN} more bad lines not shown)\n`);
  }
  totals.elapsedMs = performance.now() - started;
  totals.peakRssBytes = peakRssBytes();
  io.out((config.json ? summaryJson(totals) : formatSummary(totals)) + "\n");
  return totals;
}

/**
 * DATABASE_URL, else the embedded database of a running serve, else our own embedded one.
 * A dry run changes nothing there: no migration, no embedded database created.
 */
async function openReplayDatabase(config: ReplayConfig) {
  return await openCommandDatabase(config, {
    poolSize: config.dbPoolSize,
    migrate: config.migrate,
    dryRun: config.dryRun,
    ingest: true,
    command: "feedline replay",
  });
}

/** MQTT_URL, else the embedded broker of a running serve (MQTT 3.1.1 unless told). */
async function connectPublisher(config: ReplayConfig): Promise<MqttClient> {
  const broker = await brokerOrRunningServe(config.mqttUrl, config.dataDir);
  return await connectClient({
    url: broker.url,
    clientId: `feedline-replay-${crypto.randomUUID().slice(0, 8)}`,
    username: config.mqttUsername,
    password: config.mqttPassword,
    tls: mqttTlsOf(config),
    protocolVersion: config.mqttProtocol === "5" || (!broker.embedded && !config.mqttProtocol)
      ? 5
      : 4,
  });
}

/** Runs `replay`; a --strict stop exits non-zero after the summary. */
export async function run(args: string[]): Promise<void> {
  const config = parseReplayArgs(args, Deno.env.toObject());
  const totals = await runReplay(config);
  if (totals.stoppedAt) {
    throw new FeedlineError(
      "BAD_INPUT",
      `stopped at the bad line ${totals.stoppedAt} (--strict); the lines before it were ` +
        "replayed, and replay is idempotent: fix the line and run it again",
    );
  }
}

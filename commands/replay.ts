/**
 * `feedline replay FILE...`: feeds captured messages (serve --capture files, gzip or not,
 * `mosquitto_sub -v` output, stdin) through the same decode and processor as `serve`;
 * or re-processes `ingest_rejects` (--rejects); or re-publishes a capture to a broker
 * (--publish). See docs/replay.md.
 */
import mqtt, { type MqttClient } from "mqtt";
import { z } from "zod";
import { type ReadBadLine, readCaptures, sourceName } from "../src/capture/reader.ts";
import {
  databaseOptions,
  decodeOptions,
  decodeOptionsFrom,
  logOptions,
  processingOptions,
} from "../src/cli/option_groups.ts";
import { openDatabase } from "../src/db/database.ts";
import { readEndpoints } from "../src/embedded/endpoints.ts";
import { FeedlineError } from "../src/errors.ts";
import { FeedCache } from "../src/ingest/feed_cache.ts";
import { redactUrl } from "../src/log.ts";
import { type Inbound, REJECT_REASONS } from "../src/core/message.ts";
import { formatOptionsHelp, option, resolveOptions, zs } from "../src/cli/options.ts";
import { parseTimestamp } from "../src/core/payload.ts";
import { Progress, type ProgressMode } from "../src/replay/progress.ts";
import { replayIntoDatabase } from "../src/replay/into_database.ts";
import { countRejects, replayRejects } from "../src/replay/rejects.ts";
import {
  formatSummary,
  newTotals,
  peakRssBytes,
  type ReplayTotals,
  summaryJson,
} from "../src/replay/totals.ts";
import { republish } from "../src/replay/publish.ts";
import { compileTopicFilter } from "../src/core/topic_filter.ts";
import { mqttOptions as serveOptions } from "../src/cli/serve_options.ts";

const timeSchema = z.string().optional().refine(
  (v) => v === undefined || parseTimestamp(v) !== null,
  "an ISO 8601 time (2026-01-01T00:00:00Z) or epoch seconds or milliseconds",
);

/** Options of `replay`: its own, plus the shared database, decode and processing groups. */
export const replayOptions = {
  dryRun: option({
    flag: "dry-run",
    schema: zs.bool().default(false),
    defaultText: "off",
    doc: "Process everything, then roll each batch back; report what would have happened.",
    boolean: true,
  }),
  since: option({
    flag: "since",
    schema: timeSchema,
    defaultText: "none",
    doc: "Only messages received at or after this time (ISO 8601 or epoch s/ms).",
  }),
  until: option({
    flag: "until",
    schema: timeSchema,
    defaultText: "none",
    doc: "Only messages received before this time.",
  }),
  topic: option({
    flag: "topic",
    schema: z.string().optional(),
    defaultText: "all",
    doc: "Only messages whose topic matches this MQTT filter (+ and # wildcards).",
  }),
  format: option({
    flag: "format",
    schema: z.enum(["auto", "capture", "mosquitto"]).default("auto"),
    defaultText: "auto",
    doc: "Input format: capture (JSON lines), mosquitto (`mosquitto_sub -v`), or auto: " +
      "JSON when a file's first line starts with {.",
  }),
  strict: option({
    flag: "strict",
    schema: zs.bool().default(false),
    defaultText: "off",
    doc: "Stop at the first bad line (exit 1); by default bad lines are reported and skipped.",
    boolean: true,
  }),
  rejects: option({
    flag: "rejects",
    schema: zs.bool().default(false),
    defaultText: "off",
    doc: "Re-process ingest_rejects instead of files; rows of messages now stored are " +
      "deleted in the same transaction.",
    boolean: true,
  }),
  reason: option({
    flag: "reason",
    schema: z.string().optional().refine(
      (v) => v === undefined || v.split(",").every((r) => REJECT_REASONS.includes(r as never)),
      `a comma-separated list of ${REJECT_REASONS.join(", ")}`,
    ),
    defaultText: "all",
    doc: "With --rejects: only these reasons, comma-separated (e.g. unknown_feed).",
  }),
  publish: option({
    flag: "publish",
    schema: zs.bool().default(false),
    defaultText: "off",
    doc: "Publish the messages to a broker instead of writing them to the database.",
    boolean: true,
  }),
  speed: option({
    flag: "speed",
    schema: z.string().default("1").refine(
      (v) => v === "max" || (Number.isFinite(Number(v)) && Number(v) > 0),
      "a number above 0, or max",
    ).transform((v) => v === "max" ? Infinity : Number(v)),
    defaultText: "1",
    doc: "With --publish: 1 keeps the original pace, N is N times faster, max does not wait.",
  }),
  mqttUrl: option({
    flag: "mqtt-url",
    env: "MQTT_URL",
    schema: zs.url(["mqtt:", "mqtts:", "tcp:", "ssl:", "ws:", "wss:"]).optional(),
    defaultText: "the embedded broker of a running serve",
    doc: "With --publish: the broker. Unset: the one a local `serve` runs (its endpoints file).",
    secret: "url",
  }),
  mqttUsername: serveOptions.mqttUsername,
  mqttPassword: serveOptions.mqttPassword,
  mqttProtocol: serveOptions.mqttProtocol,
  progress: option({
    flag: "progress",
    schema: z.enum(["auto", "bar", "lines", "off"]).default("auto"),
    defaultText: "auto",
    doc: "auto: a live bar on a terminal, a line every 5 s otherwise (on stderr).",
  }),
  json: option({
    flag: "json",
    schema: zs.bool().default(false),
    defaultText: "off",
    doc: "Print the summary as one JSON object.",
    boolean: true,
  }),
  migrate: option({
    flag: "migrate",
    env: "FEEDLINE_MIGRATE",
    schema: zs.bool().default(true),
    defaultText: "on",
    doc: "Apply pending sql/ migrations first (so a new database can be filled).",
    boolean: true,
  }),
  ...databaseOptions,
  ...decodeOptions,
  batchSize: processingOptions.batchSize,
  autoRegister: processingOptions.autoRegister,
  feedCacheTtlMs: processingOptions.feedCacheTtlMs,
  rejectPayloadCap: processingOptions.rejectPayloadCap,
  ...logOptions,
};

/** `replay`'s configuration, validated. */
export type ReplayConfig = ReturnType<typeof parseReplayArgs>;

function usage(message: string): FeedlineError {
  return new FeedlineError("USAGE", `${message}; see 'feedline replay --help'`);
}

/** Parses flags and environment into a validated configuration. Pure. */
export function parseReplayArgs(args: string[], env: Record<string, string | undefined>) {
  const { values, positionals: files } = resolveOptions(replayOptions, args, env, "replay");
  if (values.rejects && files.length > 0) {
    throw usage("--rejects reads ingest_rejects; give no files with it");
  }
  if (!values.rejects && files.length === 0) {
    throw usage("give one or more capture files (- for stdin), or --rejects");
  }
  if (values.reason !== undefined && !values.rejects) throw usage("--reason goes with --rejects");
  if (values.publish && (values.rejects || values.dryRun)) {
    throw usage("--publish cannot be combined with --rejects or --dry-run");
  }
  if (files.filter((f) => f === "-").length > 1) throw usage("stdin (-) can be read only once");
  const sinceUs = values.since === undefined ? null : parseTimestamp(values.since);
  const untilUs = values.until === undefined ? null : parseTimestamp(values.until);
  if (sinceUs !== null && untilUs !== null && sinceUs >= untilUs) {
    throw new FeedlineError("CONFIG_INVALID", "--since must be before --until");
  }
  const decode = decodeOptionsFrom(values);
  const topicMatches = values.topic === undefined
    ? null
    : compileTopicFilter(values.topic, "--topic");
  return {
    ...values,
    files,
    sinceUs,
    untilUs,
    reasons: values.reason === undefined ? null : values.reason.split(","),
    decode,
    router: decode.router,
    topicMatches,
    mode: values.publish
      ? "publish" as const
      : values.rejects
      ? "rejects" as const
      : "database" as const,
  };
}

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
      const processor = {
        // As in serve: dev mode with the embedded database (also a running serve's).
        autoRegister: config.autoRegister ?? config.databaseUrl === undefined,
        rejectPayloadCap: config.rejectPayloadCap,
        feedCache: new FeedCache({ ttlMs: config.feedCacheTtlMs }),
        dryRun: config.dryRun,
      };
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
        }, totals);
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

/** Checks that every file can be read before anything is written; returns their size. */
async function statInputs(files: string[]): Promise<number> {
  let total = 0;
  for (const file of files) {
    if (file === "-") continue;
    try {
      const info = await Deno.stat(file);
      if (!info.isFile) throw new Error("not a file");
      total += info.size;
    } catch (error) {
      throw new FeedlineError(
        "BAD_INPUT",
        `cannot read ${sourceName(file)}: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }
  return total;
}

/** DATABASE_URL, else the embedded database of a running serve, else our own embedded one. */
async function openReplayDatabase(config: ReplayConfig) {
  const url = config.databaseUrl ?? (await readEndpoints(config.dataDir))?.databaseUrl;
  const db = await openDatabase({
    url,
    dataDir: config.dataDir,
    embeddedPort: config.embeddedDbPort,
    poolSize: config.dbPoolSize,
    migrate: config.migrate,
    command: "feedline replay",
  });
  return db;
}

async function connectPublisher(config: ReplayConfig): Promise<MqttClient> {
  let url = config.mqttUrl;
  let protocolVersion: 4 | 5 = config.mqttProtocol === "3.1.1" ? 4 : 5;
  if (!url) {
    const endpoints = await readEndpoints(config.dataDir);
    if (!endpoints) {
      throw new FeedlineError(
        "BROKER_UNREACHABLE",
        "no broker to publish to: set MQTT_URL (or --mqtt-url), or start `feedline serve` " +
          `with its embedded broker (no endpoints file under ${config.dataDir})`,
      );
    }
    url = endpoints.mqttUrl;
    // The embedded broker (aedes) speaks MQTT 3.1.1 only.
    protocolVersion = config.mqttProtocol === "5" ? 5 : 4;
  }
  const client = mqtt.connect(url, {
    clientId: `feedline-replay-${crypto.randomUUID().slice(0, 8)}`,
    username: config.mqttUsername,
    password: config.mqttPassword,
    protocolVersion,
    clean: true,
    reconnectPeriod: 1000,
    connectTimeout: 10_000,
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => onError(new Error("no answer within 10 s")), 10_000);
    const onConnect = () => {
      clearTimeout(timer);
      client.off("error", onError);
      resolve();
    };
    const onError = (error: Error) => {
      clearTimeout(timer);
      client.off("connect", onConnect);
      client.end(true);
      reject(
        new FeedlineError(
          "BROKER_UNREACHABLE",
          `cannot connect to MQTT broker ${redactUrl(url)}: ${error.message}; ` +
            "check MQTT_URL (and MQTT_USERNAME/MQTT_PASSWORD) and that the broker is running",
          { cause: error },
        ),
      );
    };
    client.once("connect", onConnect);
    client.once("error", onError);
  });
  return client;
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

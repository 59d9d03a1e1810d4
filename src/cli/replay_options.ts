/**
 * `replay`'s options, and `parseReplayArgs`, which resolves them (flags, then
 * environment, then defaults) and checks how they combine. Pure.
 */
import { z } from "zod";
import { REJECT_REASONS } from "../core/message.ts";
import { parseTimestamp } from "../core/payload.ts";
import { compileTopicFilter } from "../core/topic_filter.ts";
import { sparkplugOptions, sparkplugRouteOf } from "./sparkplug_options.ts";
import { FeedlineError } from "../errors.ts";
import {
  databaseOptions,
  databaseUrlFrom,
  decodeOptions,
  decodeOptionsFrom,
  logOptions,
  partitionOptions,
  processingOptions,
} from "./option_groups.ts";
import { option, resolveOptions, zs } from "./options.ts";
import { mqttClientOptions, mqttTlsOptions } from "./mqtt_options.ts";

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
    doc: "Process everything, then roll each batch back; report what would have happened. " +
      "Writes nothing anywhere: no migration (a database without the schema is refused), no " +
      "embedded database created.",
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
  mqttUsername: mqttClientOptions.mqttUsername,
  mqttPassword: mqttClientOptions.mqttPassword,
  mqttProtocol: mqttClientOptions.mqttProtocol,
  ...mqttTlsOptions,
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
  acceptUnregisteredDevices: processingOptions.acceptUnregisteredDevices,
  feedCacheTtlMs: processingOptions.feedCacheTtlMs,
  feedCacheSize: processingOptions.feedCacheSize,
  rejectPayloadCap: processingOptions.rejectPayloadCap,
  rollups: processingOptions.rollups,
  ...sparkplugOptions,
  // Partitions for the readings' months, made before each batch (src/ingest/backfill.ts).
  partitionInterval: partitionOptions.partitionInterval,
  retention: option({
    ...partitionOptions.retention,
    doc: "Make no partition for readings older than this (serve's --retention would drop " +
      "it); they go to the default partition.",
  }),
  partitionUpkeep: option({
    ...partitionOptions.partitionUpkeep,
    doc: "Create the partitions old readings need; off when pg_partman keeps them.",
  }),
  // replay prints a summary and progress, not log lines: of the log options only
  // --verbose applies (to errors, in main.ts).
  verbose: logOptions.verbose,
};

/** `replay`'s configuration, validated. */
export type ReplayConfig = ReturnType<typeof parseReplayArgs>;

function usage(message: string): FeedlineError {
  return new FeedlineError("USAGE", `${message}; see 'feedline replay --help'`);
}

/** Parses flags and environment into a validated configuration. Pure. */
export function parseReplayArgs(args: string[], env: Record<string, string | undefined>) {
  const { values, positionals: files, sources } = resolveOptions(
    replayOptions,
    args,
    env,
    "replay",
  );
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
  const decode = { ...decodeOptionsFrom(values, sources), sparkplug: sparkplugRouteOf(values) };
  const topicMatches = values.topic === undefined
    ? null
    : compileTopicFilter(values.topic, "--topic");
  return {
    ...values,
    files,
    databaseUrlFrom: databaseUrlFrom(sources.databaseUrl),
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

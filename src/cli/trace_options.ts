/**
 * `trace`'s options, and `parseTraceArgs`, which resolves them (flags, then environment,
 * then defaults). Pure. What trace prints: docs/operations.md, "A device says it sent
 * data".
 */
import { z } from "zod";
import { parseTimestamp } from "../core/payload.ts";
import { compileTopicFilter } from "../core/topic_filter.ts";
import { FeedlineError } from "../errors.ts";
import {
  databaseOptions,
  databaseUrlFrom,
  decodeOptions,
  decodeOptionsFrom,
  logOptions,
} from "./option_groups.ts";
import { option, resolveOptions, zs } from "./options.ts";

const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A time: ISO 8601, epoch seconds or milliseconds, or an age such as `10m`, `2h`, `1d`
 * (before `nowUs`); µs since the epoch, or null when it is none of these.
 */
export function parseTraceTime(text: string, nowUs: number): number | null {
  const age = /^(\d+)(s|m|h|d)$/.exec(text.trim());
  if (age) return nowUs - Number(age[1]) * UNIT_MS[age[2]] * 1000;
  return parseTimestamp(text);
}

const TIME_HINT = "an age (10m, 2h, 1d), an ISO 8601 time or epoch seconds or milliseconds";
const isTime = (v: string | undefined) => v === undefined || parseTraceTime(v, 0) !== null;

/** Options of `trace`. */
export const traceOptions = {
  topic: option({
    flag: "topic",
    schema: z.string().optional(),
    defaultText: "all",
    doc: "Only messages whose topic matches this MQTT filter (+ and # wildcards), e.g. " +
      "'<user>/dev1/#'.",
  }),
  device: option({
    flag: "device",
    schema: z.string().min(1).optional(),
    defaultText: "all",
    doc: "Only messages of this device code.",
  }),
  feed: option({
    flag: "feed",
    schema: z.string().min(1).optional(),
    defaultText: "all",
    doc: "Only messages with a reading of this feed key.",
  }),
  since: option({
    flag: "since",
    schema: z.string().refine(isTime, TIME_HINT).default("10m"),
    defaultText: "10m",
    doc: "Messages received from this time on: an age (10m, 2h, 1d), ISO 8601 or epoch s/ms.",
  }),
  until: option({
    flag: "until",
    schema: z.string().optional().refine(isTime, TIME_HINT),
    defaultText: "now",
    doc: "Messages received before this time.",
  }),
  capture: option({
    flag: "capture",
    env: "FEEDLINE_CAPTURE",
    schema: z.string().min(1).optional(),
    defaultText: "none",
    doc: "serve's capture file (and its rotations FILE.1, FILE.2, ...): every received " +
      "message, so duplicates, skips and drops are traced one by one. Without it, trace " +
      "reads the database only.",
  }),
  limit: option({
    flag: "limit",
    schema: zs.int(0).default(1000),
    defaultText: "1000",
    doc: "Print at most this many message lines (the newest); the totals count them all. " +
      "0: no limit.",
  }),
  json: option({
    flag: "json",
    schema: zs.bool().default(false),
    defaultText: "off",
    doc: "One JSON object per message, then one with the totals.",
    boolean: true,
  }),
  migrate: option({
    flag: "migrate",
    env: "FEEDLINE_MIGRATE",
    schema: zs.bool().default(true),
    defaultText: "on",
    doc: "Apply pending sql/ migrations first (trace reads the tables of the newest one).",
    boolean: true,
  }),
  ...databaseOptions,
  ...decodeOptions,
  verbose: logOptions.verbose,
};

/** `trace`'s configuration, validated. */
export type TraceConfig = ReturnType<typeof parseTraceArgs>;

/** Parses flags and environment into a validated configuration. Pure but for `nowUs`. */
export function parseTraceArgs(
  args: string[],
  env: Record<string, string | undefined>,
  nowUs = Date.now() * 1000,
) {
  const { values, positionals, sources } = resolveOptions(traceOptions, args, env, "trace");
  if (positionals.length > 0) {
    throw new FeedlineError(
      "USAGE",
      `unexpected argument "${positionals[0]}"; see 'feedline trace --help'`,
    );
  }
  const sinceUs = parseTraceTime(values.since, nowUs)!;
  const untilUs = values.until === undefined ? null : parseTraceTime(values.until, nowUs);
  if (untilUs !== null && sinceUs >= untilUs) {
    throw new FeedlineError("CONFIG_INVALID", "--since must be before --until");
  }
  return {
    ...values,
    databaseUrlFrom: databaseUrlFrom(sources.databaseUrl),
    sinceUs,
    untilUs,
    decode: decodeOptionsFrom(values, sources),
    topicMatches: values.topic === undefined ? null : compileTopicFilter(values.topic, "--topic"),
  };
}

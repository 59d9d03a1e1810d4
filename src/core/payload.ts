/**
 * Payload parsing: bytes in, a value and an optional device timestamp out, or a reject
 * reason. Never throws: a bad payload is an outcome, not an exception.
 *
 * Accepted feed payloads (docs/topics-and-payloads.md): a plain number (`23.5`), a JSON number, a JSON
 * string or boolean, `{"value": 23.5, "ts": ...}`, or a short text value (`ON`, `open`).
 */
import type { DeviceStatus, Reading, ReadingReject, RejectReason } from "./message.ts";
import {
  badTimestampDetail,
  epochMagnitudeToUs,
  MAX_TS_US,
  MIN_TS_US,
  NUMBER_RE,
} from "./timestamp_range.ts";

export { MAX_TS_US, MIN_TS_US } from "./timestamp_range.ts";

/** Limits applied while parsing. */
export interface PayloadLimits {
  /** Longest text value accepted, in characters. */
  maxTextLength: number;
  /** Deepest JSON nesting accepted (default 32: jsonb refuses far less than JSON.parse takes). */
  maxJsonDepth?: number;
  /** Most entries in one many-feeds message (default 1000). */
  maxBulkEntries?: number;
}

/** Defaults of the optional limits. */
export const DEFAULT_MAX_JSON_DEPTH = 32;
export const DEFAULT_MAX_BULK_ENTRIES = 1000;

/** Result of parsing one value. */
export type ParsedValue =
  | { ok: true; value: number | null; text: string | null; tsUs: number | null }
  | { ok: false; reason: RejectReason; detail: string };

const utf8 = new TextDecoder("utf-8", { fatal: true });

// Strict decimal syntax: no hex, no `Infinity`, no trailing junk (which Number() allows
// or treats differently). `1e999` matches and is then refused for not being finite.
// Control characters other than tab have no place in a short text value; NUL cannot
// even be stored in a PostgreSQL text column.
// deno-lint-ignore no-control-regex
export const CONTROL_RE = /[\u0000-\u0008\u000a-\u001f\u007f]/;

function fail(reason: RejectReason, detail: string): ParsedValue {
  return { ok: false, reason, detail };
}

/**
 * The value of `obj`'s own property `key`, or undefined. Parsed JSON is a plain object
 * whose prototype is `Object.prototype`: `obj.constructor` or `obj.toString` on one that
 * lacks the key would answer with a function of the prototype, and `key in obj` would say
 * true. Every field of a payload is read through here.
 */
export function ownField(obj: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(obj, key) ? obj[key] : undefined;
}

/**
 * Any JSON value as at most `max` characters of text, for a reject's detail. Never
 * throws: `String(value)` and template strings call an object's `toString`/`valueOf`,
 * and a payload's `{"toString": 1}` makes those throw ("Cannot convert object to
 * primitive value"); JSON.stringify reads no method of a parsed value (a `toJSON` key is
 * data, not a function). Text is shown as it is, other values as JSON.
 */
export function previewJson(value: unknown, max = 40): string {
  try {
    if (typeof value === "string") return value.slice(0, max);
    const text = JSON.stringify(value);
    return typeof text === "string" ? text.slice(0, max) : typeof value;
  } catch {
    return typeof value;
  }
}

// Payloads up to this many bytes that are plain ASCII are turned into a string in JS:
// for short readings that is several times cheaper than a call into TextDecoder.
const ASCII_FAST_PATH_MAX = 64;

/** Decodes UTF-8 strictly; null when the bytes are not UTF-8. */
export function decodeUtf8(bytes: Uint8Array): string | null {
  if (bytes.length <= ASCII_FAST_PATH_MAX) {
    let ascii = true;
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i] > 0x7f) {
        ascii = false;
        break;
      }
    }
    // ASCII is valid UTF-8 and maps byte for byte onto UTF-16 code units.
    if (ascii) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  }
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

/**
 * Parses a device timestamp to µs since the epoch: ISO 8601 text (a date and time, or a
 * date alone, which means midnight UTC), or epoch seconds, milliseconds or microseconds
 * (told apart by magnitude), as number or numeric text. Null for anything else,
 * including impossible calendar dates (`2026-02-30`), which `Date.parse` would roll over
 * into March, and times outside 2000–9999.
 */
export function parseTimestamp(input: unknown): number | null {
  if (typeof input === "number") return epochToUs(input);
  if (typeof input !== "string") return null;
  const text = input.trim();
  if (NUMBER_RE.test(text)) return epochToUs(Number(text));
  const m = ISO_RE.exec(text);
  if (!m) return null;
  const [, y, mo, d, h = "00", mi = "00", sec = "00", frac = "", zone = "Z"] = m;
  const year = Number(y), month = Number(mo), day = Number(d);
  const hour = Number(h), minute = Number(mi), second = Number(sec);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return null;
  if (hour > 23 || minute > 59 || second > 59) return null;
  // Without a zone, ISO 8601 means local time; a device cannot know ours, so take UTC.
  let offsetMin = 0;
  if (zone.toUpperCase() !== "Z") {
    const zh = Number(zone.slice(1, 3)), zm = Number(zone.slice(-2));
    if (zh > 23 || zm > 59) return null;
    offsetMin = (zone[0] === "-" ? -1 : 1) * (zh * 60 + zm);
  }
  const ms = Date.UTC(year, month - 1, day, hour, minute, second) - offsetMin * 60_000;
  const us = ms * 1000 + Number(frac.padEnd(6, "0").slice(0, 6));
  return us >= MIN_TS_US && us <= MAX_TS_US ? us : null;
}

// date, then optionally time (seconds optional), fraction and zone.
const ISO_RE =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?(?:[.,](\d+))?(Z|[+-]\d{2}:?\d{2})?)?$/i;

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

function epochToUs(n: number): number | null {
  if (!Number.isFinite(n) || n <= 0) return null;
  const rounded = Math.round(epochMagnitudeToUs(n));
  return rounded >= MIN_TS_US && rounded <= MAX_TS_US ? rounded : null;
}

/**
 * Formats µs since the epoch as ISO 8601 for messages; never throws, whatever the number
 * (a message's detail must not be able to crash the message path).
 */
export function formatTimestamp(us: number): string {
  const date = new Date(us / 1000);
  return Number.isNaN(date.getTime()) ? `${us} µs since the epoch` : date.toISOString();
}

/** As `formatTimestamp`, to the microsecond (receive-time stamps differ by a few µs). */
export function formatTimestampUs(us: number): string {
  const text = formatTimestamp(Math.floor(us / 1000) * 1000);
  if (!text.endsWith("Z") || !Number.isSafeInteger(us)) return text;
  return `${text.slice(0, -1)}${String(((us % 1000) + 1000) % 1000).padStart(3, "0")}Z`;
}

/** Turns a JSON scalar (or numeric/short text) into a value. */
export function scalarValue(input: unknown, limits: PayloadLimits): ParsedValue {
  if (typeof input === "number") {
    return Number.isFinite(input)
      ? { ok: true, value: input, text: null, tsUs: null }
      : fail("bad_payload", "number is not finite");
  }
  if (typeof input === "boolean") return { ok: true, value: input ? 1 : 0, text: null, tsUs: null };
  if (typeof input === "string") return textValue(input, limits);
  if (input === null) return fail("bad_payload", "value is null");
  return fail(
    "bad_payload",
    `value must be a number or short text, not ${Array.isArray(input) ? "an array" : typeof input}`,
  );
}

function textValue(raw: string, limits: PayloadLimits): ParsedValue {
  const text = raw.trim();
  if (text === "") return fail("bad_payload", "empty value");
  if (NUMBER_RE.test(text)) {
    const n = Number(text);
    return Number.isFinite(n)
      ? { ok: true, value: n, text: null, tsUs: null }
      : fail("bad_payload", `number out of range: ${text.slice(0, 40)}`);
  }
  if (/^[+-]?(?:nan|inf|infinity)$/i.test(text)) {
    return fail("bad_payload", `not a finite number: ${text}`);
  }
  if (text.length > limits.maxTextLength) {
    return fail("bad_payload", `text value longer than ${limits.maxTextLength} characters`);
  }
  if (CONTROL_RE.test(text)) return fail("bad_payload", "text value contains control characters");
  return { ok: true, value: null, text, tsUs: null };
}

function objectValue(obj: Record<string, unknown>, limits: PayloadLimits): ParsedValue {
  if (!Object.hasOwn(obj, "value")) return fail("bad_payload", 'JSON object has no "value"');
  const parsed = scalarValue(obj.value, limits);
  if (!parsed.ok) return parsed;
  const ts = ownField(obj, "ts") ?? ownField(obj, "timestamp");
  if (ts === undefined || ts === null) return parsed;
  const tsUs = parseTimestamp(ts);
  if (tsUs === null) {
    return fail("bad_timestamp", badTimestampDetail(ts, previewJson(ts)));
  }
  return { ok: true, value: parsed.value, text: parsed.text, tsUs };
}

/** Does trimmed `text` start like a JSON object, array or string? */
export function looksLikeJson(text: string): boolean {
  const c = text.charCodeAt(0);
  return c === 0x7b /* { */ || c === 0x5b /* [ */ || c === 0x22; /* " */
}

/** JSON.parse, never throwing, refusing nesting deeper than `limits.maxJsonDepth`. */
export function parseJson(
  text: string,
  limits: PayloadLimits,
): { ok: true; json: unknown } | { ok: false; detail: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    // Input nested deeper than V8 takes ends here too (RangeError), as a bad payload.
    return { ok: false, detail: `invalid JSON: ${(error as Error).message.slice(0, 80)}` };
  }
  const maxDepth = limits.maxJsonDepth ?? DEFAULT_MAX_JSON_DEPTH;
  if (json !== null && typeof json === "object" && nestingExceeds(json, maxDepth)) {
    return { ok: false, detail: `JSON nested deeper than ${maxDepth} levels` };
  }
  return { ok: true, json };
}

/** Parses the payload of a single-feed message. */
export function parseFeedPayload(text: string, limits: PayloadLimits): ParsedValue {
  const trimmed = text.trim();
  if (trimmed === "") return fail("bad_payload", "empty payload");
  if (!looksLikeJson(trimmed)) return textValue(trimmed, limits);
  const parsed = parseJson(trimmed, limits);
  if (!parsed.ok) return fail("bad_payload", parsed.detail);
  const json = parsed.json;
  if (json !== null && typeof json === "object" && !Array.isArray(json)) {
    return objectValue(json as Record<string, unknown>, limits);
  }
  return scalarValue(json, limits);
}

// Characters a name may not hold: control characters, and the topic separator and
// wildcards, which would make it a different topic (MQTT 5 §4.7.1).
// deno-lint-ignore no-control-regex
const BAD_NAME_RE = /[\u0000-\u001f\u007f+#/]/;

/**
 * The one rule for a device code or feed key, from a topic level or a many-feeds
 * payload: 1 to 128 characters, printable, no `+ # /`. Bounded and printable, names are
 * safe as keys and in logs.
 */
export function isValidName(name: string): boolean {
  return name.length > 0 && name.length <= 128 && !BAD_NAME_RE.test(name);
}

/**
 * Parses the payload of a many-feeds message: `{"temp": 21.5, "hum": {"value": 40}}`
 * (where a top-level `"ts"` is the time of every entry without its own), or
 * `[{"feed": "temp", "value": 21.5, "ts": ...}]`. Good entries are kept even when others
 * are bad.
 */
export function parseBulkPayload(
  text: string,
  limits: PayloadLimits,
): { ok: true; readings: Reading[]; rejects: ReadingReject[] } | {
  ok: false;
  reason: RejectReason;
  detail: string;
} {
  const parsed = parseJson(text.trim(), limits);
  if (!parsed.ok) return { ok: false, reason: "bad_payload", detail: parsed.detail };
  const json = parsed.json;
  const maxEntries = limits.maxBulkEntries ?? DEFAULT_MAX_BULK_ENTRIES;
  const entries = Array.isArray(json)
    ? json.length
    : json !== null && typeof json === "object"
    ? Object.keys(json).length
    : 0;
  if (entries > maxEntries) {
    return {
      ok: false,
      reason: "too_large",
      detail: `many-feeds message has ${entries} entries; the limit is ${maxEntries}`,
    };
  }
  const readings: Reading[] = [];
  const rejects: ReadingReject[] = [];
  const add = (key: unknown, value: ParsedValue) => {
    if (typeof key !== "string" || !isValidName(key)) {
      rejects.push({ reason: "bad_payload", detail: `bad feed key: ${previewJson(key)}` });
    } else if (!value.ok) {
      rejects.push({ reason: value.reason, detail: `${key}: ${value.detail}` });
    } else {
      readings.push({ feedKey: key, value: value.value, text: value.text, tsUs: value.tsUs });
    }
  };
  if (Array.isArray(json)) {
    for (const entry of json) {
      if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
        rejects.push({ reason: "bad_payload", detail: "array entry is not an object" });
        continue;
      }
      const e = entry as Record<string, unknown>;
      add(ownField(e, "feed") ?? ownField(e, "key"), objectValue(e, limits));
    }
  } else if (json !== null && typeof json === "object") {
    // In the object form, "ts" (or "timestamp") is the time of the whole message, not a
    // feed: it applies to every entry that carries no time of its own.
    const obj = json as Record<string, unknown>;
    const sharedTs = ownField(obj, "ts") ?? ownField(obj, "timestamp");
    let sharedTsUs: number | null = null;
    if (sharedTs !== undefined && sharedTs !== null) {
      sharedTsUs = parseTimestamp(sharedTs);
      if (sharedTsUs === null) {
        return {
          ok: false,
          reason: "bad_timestamp",
          detail: badTimestampDetail(sharedTs, previewJson(sharedTs)),
        };
      }
    }
    for (const [key, value] of Object.entries(obj)) {
      if (key === "ts" || key === "timestamp") continue;
      const parsed = value !== null && typeof value === "object" && !Array.isArray(value)
        ? objectValue(value as Record<string, unknown>, limits)
        : scalarValue(value, limits);
      add(key, parsed.ok && parsed.tsUs === null ? { ...parsed, tsUs: sharedTsUs } : parsed);
    }
  } else {
    return {
      ok: false,
      reason: "bad_payload",
      detail: "many-feeds payload must be a JSON object or array",
    };
  }
  if (readings.length === 0 && rejects.length === 0) {
    return { ok: false, reason: "bad_payload", detail: "many-feeds payload has no entries" };
  }
  return { ok: true, readings, rejects };
}

/** Parses a device status payload: `online` / `offline`, or `{"status": "online", ...}`. */
export function parseStatusPayload(
  text: string,
  limits: PayloadLimits,
):
  | { ok: true; status: DeviceStatus; details: Record<string, unknown> | null; tsUs: number | null }
  | {
    ok: false;
    reason: RejectReason;
    detail: string;
  } {
  const trimmed = text.trim();
  let word: unknown = trimmed;
  let details: Record<string, unknown> | null = null;
  let tsUs: number | null = null;
  if (looksLikeJson(trimmed)) {
    const parsed = parseJson(trimmed, limits);
    if (!parsed.ok) return { ok: false, reason: "bad_payload", detail: parsed.detail };
    if (typeof parsed.json === "string") {
      word = parsed.json;
    } else if (
      parsed.json !== null && typeof parsed.json === "object" && !Array.isArray(parsed.json)
    ) {
      details = parsed.json as Record<string, unknown>;
      word = ownField(details, "status");
      const ts = ownField(details, "ts") ?? ownField(details, "timestamp");
      if (ts !== undefined && ts !== null) {
        tsUs = parseTimestamp(ts);
        if (tsUs === null) {
          return {
            ok: false,
            reason: "bad_timestamp",
            detail: badTimestampDetail(ts, previewJson(ts)),
          };
        }
      }
    } else {
      return { ok: false, reason: "bad_payload", detail: "status must be a word or a JSON object" };
    }
  }
  const status = typeof word === "string" ? word.trim().toLowerCase() : "";
  if (status === "online" || status === "offline") return { ok: true, status, details, tsUs };
  return {
    ok: false,
    reason: "bad_status",
    detail: `unknown status ${JSON.stringify(previewJson(word ?? ""))}; expected online or offline`,
  };
}

/** Is `value` nested deeper than `max` levels? Iterative: safe on any input. */
export function nestingExceeds(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== "object") continue;
    if (depth > max) return true;
    for (const child of Object.values(v as Record<string, unknown>)) {
      if (child !== null && typeof child === "object") stack.push([child, depth + 1]);
    }
  }
  return false;
}

/**
 * A JSON value as text PostgreSQL's jsonb accepts: `\u0000` and lone surrogates (which
 * jsonb refuses as "unsupported Unicode escape sequence") become U+FFFD, in keys and
 * values alike. The caller has bounded the nesting.
 */
export function storableJson(value: unknown): string {
  return JSON.stringify(cleanJson(value));
}

function cleanJson(value: unknown): unknown {
  if (typeof value === "string") return cleanString(value);
  // A CBOR payload (src/core/mappings/cbor.ts) may hold what JSON has not: integers
  // beyond 2^53 (JSON.stringify throws on a bigint) and byte strings.
  if (typeof value === "bigint") return Number(value);
  if (value instanceof Uint8Array) return Array.from(value);
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map(cleanJson);
  // No prototype: a "__proto__" key is then a key like any other, not a setter.
  const out: Record<string, unknown> = Object.create(null);
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out[cleanString(k)] = cleanJson(v);
  }
  return out;
}

function cleanString(s: string): string {
  const wellFormed = s.isWellFormed() ? s : s.toWellFormed();
  return wellFormed.includes("\u0000") ? wellFormed.replaceAll("\u0000", "\ufffd") : wellFormed;
}

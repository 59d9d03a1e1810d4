/**
 * Payload parsing: bytes in, a value and an optional device timestamp out, or a reject
 * reason. Never throws: a bad payload is an outcome, not an exception.
 *
 * Accepted feed payloads (DESIGN §3): a plain number (`23.5`), a JSON number, a JSON
 * string or boolean, `{"value": 23.5, "ts": ...}`, or a short text value (`ON`, `open`).
 */
import type { DeviceStatus, Reading, ReadingReject, RejectReason } from "./message.ts";

/** Limits applied while parsing. */
export interface PayloadLimits {
  /** Longest text value accepted, in characters. */
  maxTextLength: number;
}

/** Result of parsing one value. */
export type ParsedValue =
  | { ok: true; value: number | null; text: string | null; tsUs: number | null }
  | { ok: false; reason: RejectReason; detail: string };

const utf8 = new TextDecoder("utf-8", { fatal: true });

// Strict decimal syntax: no hex, no `Infinity`, no trailing junk (which Number() allows
// or treats differently). `1e999` matches and is then refused for not being finite.
const NUMBER_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
// Control characters other than tab have no place in a short text value; NUL cannot
// even be stored in a PostgreSQL text column.
// deno-lint-ignore no-control-regex
const CONTROL_RE = /[\u0000-\u0008\u000a-\u001f\u007f]/;

// Earliest device timestamp we believe: clocks that were never set report 1970.
const MIN_TS_US = Date.UTC(2000, 0, 1) * 1000;

function fail(reason: RejectReason, detail: string): ParsedValue {
  return { ok: false, reason, detail };
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
 * Parses a device timestamp to µs since the epoch: ISO 8601 text, or epoch seconds,
 * milliseconds or microseconds (told apart by magnitude), as number or numeric text.
 */
export function parseTimestamp(input: unknown): number | null {
  if (typeof input === "number") return epochToUs(input);
  if (typeof input !== "string") return null;
  const text = input.trim();
  if (NUMBER_RE.test(text)) return epochToUs(Number(text));
  const m = /^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d+))?(Z|[+-]\d{2}:?\d{2})?$/i
    .exec(text);
  if (!m) return null;
  // Without a zone, ISO 8601 means local time; a device cannot know ours, so take UTC.
  const zone = m[3] ?? "Z";
  const ms = Date.parse(
    `${m[1].replace(" ", "T")}${zone.length === 5 ? zone.slice(0, 3) + ":" + zone.slice(3) : zone}`,
  );
  if (!Number.isFinite(ms)) return null;
  const fraction = (m[2] ?? "").padEnd(6, "0").slice(0, 6);
  const us = ms * 1000 + Number(fraction);
  return us >= MIN_TS_US ? us : null;
}

function epochToUs(n: number): number | null {
  if (!Number.isFinite(n) || n <= 0) return null;
  const abs = Math.abs(n);
  // Seconds until the year 5138, milliseconds until 5138, then microseconds.
  const us = abs < 1e11 ? n * 1e6 : abs < 1e14 ? n * 1e3 : n;
  const rounded = Math.round(us);
  return rounded >= MIN_TS_US ? rounded : null;
}

/** Turns a JSON scalar (or numeric/short text) into a value. */
function scalarValue(input: unknown, limits: PayloadLimits): ParsedValue {
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
  if (!("value" in obj)) return fail("bad_payload", 'JSON object has no "value"');
  const parsed = scalarValue(obj.value, limits);
  if (!parsed.ok) return parsed;
  const ts = obj.ts ?? obj.timestamp;
  if (ts === undefined || ts === null) return parsed;
  const tsUs = parseTimestamp(ts);
  if (tsUs === null) {
    return fail("bad_timestamp", `unparsable timestamp: ${String(ts).slice(0, 40)}`);
  }
  return { ok: true, value: parsed.value, text: parsed.text, tsUs };
}

function looksLikeJson(text: string): boolean {
  const c = text.charCodeAt(0);
  return c === 0x7b /* { */ || c === 0x5b /* [ */ || c === 0x22; /* " */
}

function parseJson(text: string): { ok: true; json: unknown } | { ok: false; detail: string } {
  try {
    return { ok: true, json: JSON.parse(text) };
  } catch (error) {
    // Deeply nested input ends here too (RangeError), as a bad payload.
    return { ok: false, detail: `invalid JSON: ${(error as Error).message.slice(0, 80)}` };
  }
}

/** Parses the payload of a single-feed message. */
export function parseFeedPayload(text: string, limits: PayloadLimits): ParsedValue {
  const trimmed = text.trim();
  if (trimmed === "") return fail("bad_payload", "empty payload");
  if (!looksLikeJson(trimmed)) return textValue(trimmed, limits);
  const parsed = parseJson(trimmed);
  if (!parsed.ok) return fail("bad_payload", parsed.detail);
  const json = parsed.json;
  if (json !== null && typeof json === "object" && !Array.isArray(json)) {
    return objectValue(json as Record<string, unknown>, limits);
  }
  return scalarValue(json, limits);
}

/** Feed keys inside bulk payloads obey the same rules as topic levels. */
export function isValidFeedKey(key: string): boolean {
  return key.length > 0 && key.length <= 128 && !/[+#/]/.test(key) && !CONTROL_RE.test(key);
}

/**
 * Parses the payload of a many-feeds message: `{"temp": 21.5, "hum": {"value": 40}}` or
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
  const parsed = parseJson(text.trim());
  if (!parsed.ok) return { ok: false, reason: "bad_payload", detail: parsed.detail };
  const json = parsed.json;
  const readings: Reading[] = [];
  const rejects: ReadingReject[] = [];
  const add = (key: unknown, value: ParsedValue) => {
    if (typeof key !== "string" || !isValidFeedKey(key)) {
      rejects.push({ reason: "bad_payload", detail: `bad feed key: ${String(key).slice(0, 40)}` });
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
      add(e.feed ?? e.key, objectValue(e, limits));
    }
  } else if (json !== null && typeof json === "object") {
    for (const [key, value] of Object.entries(json as Record<string, unknown>)) {
      add(
        key,
        value !== null && typeof value === "object" && !Array.isArray(value)
          ? objectValue(value as Record<string, unknown>, limits)
          : scalarValue(value, limits),
      );
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
    const parsed = parseJson(trimmed);
    if (!parsed.ok) return { ok: false, reason: "bad_payload", detail: parsed.detail };
    if (typeof parsed.json === "string") {
      word = parsed.json;
    } else if (
      parsed.json !== null && typeof parsed.json === "object" && !Array.isArray(parsed.json)
    ) {
      details = parsed.json as Record<string, unknown>;
      word = details.status;
      const ts = details.ts ?? details.timestamp;
      if (ts !== undefined && ts !== null) {
        tsUs = parseTimestamp(ts);
        if (tsUs === null) {
          return {
            ok: false,
            reason: "bad_timestamp",
            detail: `unparsable timestamp: ${String(ts).slice(0, 40)}`,
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
    detail: `unknown status ${
      JSON.stringify(String(word ?? "")).slice(0, 40)
    }; expected online or offline`,
  };
}

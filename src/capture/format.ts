/**
 * The capture format (docs/replay.md, "Capture format"), shared by `serve --capture` and `replay`: JSON lines,
 * one message a line,
 *
 * ```json
 * {"topic":"…","payload":"21.5","qos":1,"retain":false,"received_at":"2026-01-01T00:00:00.123456Z"}
 * ```
 *
 * with `payload_b64` instead of `payload` when the bytes are not UTF-8 (or start with a
 * byte order mark). `received_at` has
 * microsecond precision: it is the `Inbound.receivedAtUs` that `serve` stamped, and so the
 * `created_at` of a reading without a device timestamp. Replaying it therefore re-creates
 * exactly the same `(feed_id, created_at)` keys. `replay` also reads `mosquitto_sub -v`
 * output (`topic payload` per line). Pure: no I/O.
 */
import { Buffer } from "node:buffer";
import type { Inbound, Qos } from "../core/message.ts";
import { decodeUtf8, parseTimestamp, previewJson } from "../core/payload.ts";

/** A capture line, parsed. `receivedAtUs` is null when the line has no time of its own. */
export interface CaptureEntry {
  topic: string;
  payload: Uint8Array;
  qos: Qos;
  retain: boolean;
  receivedAtUs: number | null;
  /** The time has microsecond precision: use it as is (else it is made unique first). */
  exactTime: boolean;
  /** Set on messages `serve` received but dropped (QoS 0, queue full). */
  dropped?: string;
}

/** A parse result: the entry, or why the line is bad. */
export type ParsedLine = { ok: true; entry: CaptureEntry } | { ok: false; error: string };

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
// Six or more fraction digits: a time written with microsecond precision (ours are).
const EXACT_TIME_RE = /[T ]\d{2}:\d{2}:\d{2}[.,]\d{6}/;

/**
 * Formats µs since the epoch as ISO 8601 UTC with six fraction digits.
 *
 * @example
 * ```ts
 * formatMicros(1767225600123456); // "2026-01-01T00:00:00.123456Z"
 * ```
 */
export function formatMicros(us: number): string {
  const ms = Math.floor(us / 1000);
  const iso = new Date(ms).toISOString();
  return `${iso.slice(0, 23)}${String(us - ms * 1000).padStart(3, "0")}Z`;
}

/** Does the payload start with a UTF-8 byte order mark (which a text decoder drops)? */
function startsWithBom(p: Uint8Array): boolean {
  return p.byteLength >= 3 && p[0] === 0xef && p[1] === 0xbb && p[2] === 0xbf;
}

/**
 * Encodes one message as a capture line (without the newline). A payload goes in as text
 * only when the text gives back the same bytes (binary ones, such as Sparkplug B protobuf,
 * often do): UTF-8, without a byte order mark, which decoding would drop.
 */
export function encodeCaptureLine(msg: Inbound, dropped?: string): string {
  const text = startsWithBom(msg.payload) ? null : decodeUtf8(msg.payload);
  const payload = text !== null
    ? `"payload":${JSON.stringify(text)}`
    : `"payload_b64":"${
      Buffer.from(msg.payload.buffer, msg.payload.byteOffset, msg.payload.byteLength)
        .toString("base64")
    }"`;
  return `{"topic":${
    JSON.stringify(msg.topic)
  },${payload},"qos":${msg.qos},"retain":${msg.retain},` +
    `"received_at":"${formatMicros(msg.receivedAtUs)}"${
      dropped ? `,"dropped":${JSON.stringify(dropped)}` : ""
    }}`;
}

function fail(error: string): ParsedLine {
  return { ok: false, error };
}

/** Parses one line of the capture format. Never throws. */
export function parseCaptureLine(line: string): ParsedLine {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch (error) {
    return fail(`broken JSON: ${(error as Error).message.slice(0, 80)}`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    return fail("not a JSON object");
  }
  const o = json as Record<string, unknown>;
  if (typeof o.topic !== "string" || o.topic === "") return fail('missing "topic"');
  const topicError = checkTopic(o.topic);
  if (topicError) return fail(topicError);

  let payload: Uint8Array;
  if (typeof o.payload === "string") {
    if (o.payload_b64 !== undefined) return fail('both "payload" and "payload_b64"');
    payload = o.payload === "" ? EMPTY : encoder.encode(o.payload);
  } else if (typeof o.payload_b64 === "string") {
    if (!BASE64_RE.test(o.payload_b64)) return fail('"payload_b64" is not base64');
    payload = new Uint8Array(Buffer.from(o.payload_b64, "base64"));
  } else {
    return fail('missing "payload" (or "payload_b64")');
  }

  const qos = o.qos ?? 0;
  if (qos !== 0 && qos !== 1 && qos !== 2) return fail('"qos" must be 0, 1 or 2');
  const retain = o.retain ?? false;
  if (typeof retain !== "boolean") return fail('"retain" must be true or false');

  let receivedAtUs: number | null = null;
  let exactTime = false;
  if (o.received_at !== undefined && o.received_at !== null) {
    receivedAtUs = parseTimestamp(o.received_at);
    if (receivedAtUs === null) {
      return fail(`bad "received_at": ${previewJson(o.received_at)}`);
    }
    exactTime = typeof o.received_at === "string" && EXACT_TIME_RE.test(o.received_at);
  }
  const entry: CaptureEntry = { topic: o.topic, payload, qos, retain, receivedAtUs, exactTime };
  if (typeof o.dropped === "string") entry.dropped = o.dropped;
  return { ok: true, entry };
}

/**
 * Parses one line of `mosquitto_sub -v` output: the topic, one space, the payload. A
 * topic has no spaces in practice; a payload may (everything after the first space). A
 * payload with a newline cannot be told apart from the next line: that is a limit of
 * the format (capture files have none).
 */
export function parseMosquittoLine(line: string): ParsedLine {
  const space = line.indexOf(" ");
  const topic = space === -1 ? line : line.slice(0, space);
  const text = space === -1 ? "" : line.slice(space + 1);
  if (topic === "") return fail("missing topic (line starts with a space)");
  const topicError = checkTopic(topic);
  if (topicError) return fail(topicError);
  return {
    ok: true,
    entry: {
      topic,
      payload: text === "" ? EMPTY : encoder.encode(text),
      qos: 0,
      retain: false,
      receivedAtUs: null,
      exactTime: false,
    },
  };
}

// A topic name that a publisher sent cannot hold wildcards or NUL (MQTT 5 §4.7.3,
// §1.5.4); a line that has them was not a received message.
function checkTopic(topic: string): string | null {
  if (topic.includes("+") || topic.includes("#")) return `topic has wildcards: ${topic}`;
  if (topic.includes("\u0000")) return "topic contains NUL";
  if (topic.length > 65535) return "topic longer than 65535 characters";
  return null;
}

/** Which format a file is in, from its first non-empty line: JSON → capture. */
export function sniffFormat(firstLine: string): "capture" | "mosquitto" {
  return firstLine.trimStart().startsWith("{") ? "capture" : "mosquitto";
}

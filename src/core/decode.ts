/**
 * decode: an `Inbound` (topic + bytes) becomes a `Decoded` (what it says) or a reject.
 * Pure and allocation-light; runs on the receive path for every message.
 */
import type { Decoded, Inbound, Reading, ReadingReject } from "./message.ts";
import { payloadSizeOf } from "./message.ts";
import {
  decodeUtf8,
  formatTimestamp,
  isValidName,
  parseBulkPayload,
  parseFeedPayload,
  parseStatusPayload,
} from "./payload.ts";
import type { TopicRouter } from "./topics.ts";
import { decodeSparkplug, type SparkplugRoute } from "./sparkplug/decode.ts";
import { isUnderNamespace } from "./sparkplug/topic.ts";
import { RECEIVE_STAMP_STEP_US } from "../clock.ts";
import { describeError } from "../errors.ts";

/**
 * A decoder of its own for every topic: the compiled rules of a mappings file
 * (src/core/mappings/decode_mapped.ts), which replace the three templates.
 */
export interface MappedDecoder {
  decode(msg: Inbound, opts: DecodeOptions): Decoded;
}

/** What decode needs to know. */
export interface DecodeOptions {
  router: TopicRouter;
  /** `serve --mappings`: the rules decode every message instead of the templates. */
  mappings?: MappedDecoder;
  /** Payloads larger than this are rejected as `too_large` without parsing. */
  maxPayloadBytes: number;
  maxTextLength: number;
  /** Device timestamps further ahead of the receive time than this are rejected. */
  maxFutureSkewMs: number;
  /** Longer topics are rejected as `bad_topic` before they are split (default 1024). */
  maxTopicLength?: number;
  /** See PayloadLimits. */
  maxJsonDepth?: number;
  maxBulkEntries?: number;
  /**
   * Sparkplug B (`--sparkplug-tenant`): topics under its namespace are Sparkplug messages
   * of this tenant (docs/topics-and-payloads.md, "Sparkplug B"); absent: none.
   */
  sparkplug?: SparkplugRoute;
}

/** Default of `DecodeOptions.maxTopicLength`: every level of the default templates fits. */
export const DEFAULT_MAX_TOPIC_LENGTH = 1024;

// Shared by every single-feed message: nothing appends to a decoded message's rejects.
const NO_REJECTS: ReadingReject[] = Object.freeze([]) as unknown as ReadingReject[];

/** 8-4-4-4-12 hex digits, either case; a character loop, as it runs for every message. */
export function isUuid(s: string): boolean {
  if (s.length !== 36) return false;
  for (let i = 0; i < 36; i++) {
    const c = s.charCodeAt(i);
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (c !== 0x2d) return false;
    } else if (
      !((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46))
    ) {
      return false;
    }
  }
  return true;
}

/** Topic + payload → what the message says. */
export type Decoder = (msg: Inbound, opts: DecodeOptions) => Decoded;

/** Longest kept of a decode failure's detail. */
const MAX_FAILURE_DETAIL = 500;

/**
 * The one decode guard: `decoder`, made never to throw. A failure of the decoder itself
 * (a bug) becomes an `internal_error` reject carrying the error (at most 500 characters),
 * so the message is dead-lettered and acknowledged like any other instead of crashing
 * the process, and can be replayed once the bug is fixed (docs/delivery.md, "On the
 * delivery path"). `decode` is `decodeMessage` guarded; serve's intake guards a decoder
 * a test puts in its place the same way.
 */
export function neverThrowing(decoder: Decoder): Decoder {
  return (msg, opts) => {
    try {
      return decoder(msg, opts);
    } catch (error) {
      return {
        kind: "reject",
        reason: "internal_error",
        detail: `decode failed: ${describeError(error)}`.slice(0, MAX_FAILURE_DETAIL),
      };
    }
  };
}

/**
 * Decodes one inbound message. Never throws: whatever the topic and payload, the result
 * is a message, a skip or a reject (`neverThrowing`).
 */
export const decode: Decoder = neverThrowing(decodeMessage);

function decodeMessage(msg: Inbound, opts: DecodeOptions): Decoded {
  const maxTopic = opts.maxTopicLength ?? DEFAULT_MAX_TOPIC_LENGTH;
  if (msg.topic.length > maxTopic) {
    return {
      kind: "reject",
      reason: "bad_topic",
      detail: `topic is ${msg.topic.length} characters; the limit is ${maxTopic}`,
    };
  }
  if (opts.sparkplug && isUnderNamespace(msg.topic, opts.sparkplug.namespace)) {
    return decodeSparkplug(msg, opts.sparkplug, opts);
  }
  if (opts.mappings) return opts.mappings.decode(msg, opts);
  const match = opts.router.match(msg.topic);
  if (!match) return { kind: "reject", reason: "bad_topic", detail: "topic matches no template" };
  if (!isUuid(match.userId)) {
    return { kind: "reject", reason: "bad_user_id", detail: "user id is not a UUID" };
  }
  if (!isValidName(match.deviceCode) || (match.kind === "feed" && !isValidName(match.feedKey))) {
    return {
      kind: "reject",
      reason: "bad_topic",
      detail: "device code or feed key too long or has control characters",
    };
  }
  if (payloadSizeOf(msg) > opts.maxPayloadBytes) {
    return {
      kind: "reject",
      reason: "too_large",
      detail: `payload is ${payloadSizeOf(msg)} bytes; the limit is ${opts.maxPayloadBytes}`,
    };
  }
  // An empty retained message is how a publisher clears the retained one (MQTT 5
  // §3.3.1.3); there is nothing to store. Whatever the RETAIN flag says: a broker forwards
  // the clear to a live subscriber with RETAIN 0 (serve subscribes without
  // Retain-As-Published), and an empty payload cannot be a reading or a status anyway
  // (docs/topics-and-payloads.md, "Retained messages").
  if (msg.payload.byteLength === 0) return { kind: "skip", reason: "retained_cleared" };
  const text = decodeUtf8(msg.payload);
  if (text === null) {
    return { kind: "reject", reason: "bad_payload", detail: "payload is not UTF-8" };
  }
  const userId = match.userId.toLowerCase();
  const deviceCode = match.deviceCode;
  const limits = opts; // a PayloadLimits: no object per message
  const latestUs = msg.receivedAtUs + opts.maxFutureSkewMs * 1000;

  if (match.kind === "status") {
    const s = parseStatusPayload(text, limits);
    if (!s.ok) return { kind: "reject", reason: s.reason, detail: s.detail };
    if (s.tsUs !== null && s.tsUs > latestUs) return futureReject(s.tsUs);
    return {
      kind: "status",
      userId,
      deviceCode,
      status: s.status,
      details: s.details,
      tsUs: s.tsUs,
    };
  }

  if (match.kind === "feed") {
    const v = parseFeedPayload(text, limits);
    if (!v.ok) return { kind: "reject", reason: v.reason, detail: v.detail };
    if (v.tsUs !== null && v.tsUs > latestUs) return futureReject(v.tsUs);
    const reading: Reading = { feedKey: match.feedKey, value: v.value, text: v.text, tsUs: v.tsUs };
    return { kind: "readings", userId, deviceCode, readings: [reading], rejects: NO_REJECTS };
  }

  const bulk = parseBulkPayload(text, limits);
  if (!bulk.ok) return { kind: "reject", reason: bulk.reason, detail: bulk.detail };
  const readings: Reading[] = [];
  for (const r of bulk.readings) {
    if (r.tsUs !== null && r.tsUs > latestUs) {
      bulk.rejects.push({
        reason: "future_timestamp",
        detail: `${r.feedKey}: ${futureDetail(r.tsUs)}`,
      });
    } else {
      readings.push(r);
    }
  }
  if (readings.length === 0 && bulk.rejects.length === 1) {
    return { kind: "reject", ...bulk.rejects[0] };
  }
  if (readings.length > 1) spreadReceiveStamps(readings);
  return { kind: "readings", userId, deviceCode, readings, rejects: bulk.rejects };
}

/**
 * Entries of one many-feeds message without a time of their own all take the message's
 * receive time; two of them for one feed would share the key (feed_id, created_at), and
 * the second would be absorbed as a duplicate. So the k-th untimed entry of a feed
 * (k = 0, 1, ...) is stamped `RECEIVE_STAMP_STEP_US * k` after the message
 * (`Reading.receiveOffsetUs`): a multiple of the lane count keeps every stamp in the
 * process's clock lane, and the offsets follow from the payload alone, so a retried
 * batch or a replay stamps the message the same way (docs/delivery.md, "Duplicates and
 * idempotence"). The receive clock is moved past the last of them
 * (`lastReceiveOffsetUs`), so the next message's stamp is not among them.
 */
export function spreadReceiveStamps(readings: Reading[]): void {
  let seen: Map<string, number> | null = null;
  for (const r of readings) {
    if (r.tsUs !== null) continue;
    seen ??= new Map();
    const k = seen.get(r.feedKey) ?? 0;
    seen.set(r.feedKey, k + 1);
    if (k > 0) r.receiveOffsetUs = k * RECEIVE_STAMP_STEP_US;
  }
}

/**
 * How far after its receive time the last stamp of a decoded message lies (0 for all but
 * a many-feeds message with several untimed entries of one feed); the receive clock must
 * not give the next message a stamp up to there (src/clock.ts `reserveStampsThrough`).
 */
export function lastReceiveOffsetUs(decoded: Decoded): number {
  if (decoded.kind !== "readings" || decoded.readings.length < 2) return 0;
  let last = 0;
  for (const r of decoded.readings) {
    if (r.receiveOffsetUs !== undefined && r.receiveOffsetUs > last) last = r.receiveOffsetUs;
  }
  return last;
}

/** The detail of a `future_timestamp` reject. */
export function futureDetail(tsUs: number): string {
  return `timestamp ${formatTimestamp(tsUs)} is in the future`;
}

function futureReject(tsUs: number): Decoded {
  return { kind: "reject", reason: "future_timestamp", detail: futureDetail(tsUs) };
}

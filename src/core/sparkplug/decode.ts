/**
 * Decodes a Sparkplug B message: topic and protobuf payload → a `sparkplug` message whose
 * metrics the processor resolves against the recorded BIRTH state
 * (src/ingest/write/sparkplug.ts), or a reject. Pure; never throws (the protobuf decode
 * is guarded here, and `neverThrowing` in src/core/decode.ts guards the rest).
 *
 * The seam with the topic rules: `decodeSparkplug(inbound, route, limits)` takes the
 * tenant and namespace from its caller (serve's `--sparkplug-tenant` through
 * src/core/decode.ts, or a mapping rule of format `sparkplug` through
 * src/core/sparkplug/rule.ts) and needs nothing else (docs/topics-and-payloads.md,
 * "Sparkplug B").
 */
import type { Decoded, Inbound } from "../message.ts";
import { payloadSizeOf } from "../message.ts";
import { CONTROL_RE, formatTimestamp, isValidName, MAX_TS_US, MIN_TS_US } from "../payload.ts";
import type { MetricReject, MetricValue, SparkplugMessage, SparkplugMetric } from "./model.ts";
import { sparkplugDeviceCode } from "./names.ts";
import { decodeWire, unsignedOf, type WireLong, type WireMetric } from "./schema.ts";
import { parseSparkplugTopic } from "./topic.ts";

/** Where Sparkplug messages go and how many metrics one may carry. */
export interface SparkplugRoute {
  /** The tenant: a lower-case user id. */
  userId: string;
  /** The topic namespace, `spBv1.0` unless a bridge puts it under a prefix. */
  namespace: string;
  /** Payloads with more metrics are rejected as too_large. */
  maxMetrics: number;
}

/** The limits of src/core/decode.ts's `DecodeOptions` that apply here. */
export interface SparkplugLimits {
  maxPayloadBytes: number;
  maxTextLength: number;
  maxFutureSkewMs: number;
}

/** Default of `SparkplugRoute.maxMetrics` (`--sparkplug-max-metrics`). */
export const DEFAULT_SPARKPLUG_MAX_METRICS = 10_000;

/**
 * Longest metric name kept: a longer one cannot make a feed key (at most 128 characters
 * with the device code), and the recorded BIRTH's key holds it (sql/009: bounded, so its
 * index never refuses a row).
 */
const MAX_NAME_CHARS = 128;

function reject(reason: "bad_topic" | "bad_payload" | "too_large", detail: string): Decoded {
  return { kind: "reject", reason, detail };
}

/** Decodes one Sparkplug B message; see the module doc. */
export function decodeSparkplug(
  msg: Inbound,
  route: SparkplugRoute,
  limits: SparkplugLimits,
): Decoded {
  const topic = parseSparkplugTopic(msg.topic, route.namespace);
  if (!topic) {
    return reject(
      "bad_topic",
      `not a Sparkplug B topic feedline ingests: ${route.namespace}/{group}/` +
        "{NBIRTH|NDATA|NDEATH}/{edge node} or .../{DBIRTH|DDATA|DDEATH}/{edge node}/{device}",
    );
  }
  const deviceCode = sparkplugDeviceCode(topic.groupId, topic.edgeNodeId, topic.deviceId);
  if (!isValidName(deviceCode)) {
    return reject(
      "bad_topic",
      "group, edge node and device id make a device code longer than 128 characters or " +
        "with control characters",
    );
  }
  if (payloadSizeOf(msg) > limits.maxPayloadBytes) {
    return reject(
      "too_large",
      `payload is ${payloadSizeOf(msg)} bytes; the limit is ${limits.maxPayloadBytes}`,
    );
  }
  // The empty retained message that clears a retained one (src/core/decode.ts says why).
  if (msg.payload.byteLength === 0) return { kind: "skip", reason: "retained_cleared" };
  let wire;
  try {
    wire = decodeWire(msg.payload);
  } catch (error) {
    return reject(
      "bad_payload",
      `not a Sparkplug B payload (protobuf): ${String((error as Error)?.message).slice(0, 120)}`,
    );
  }
  const wireMetrics = wire.metrics ?? [];
  if (wireMetrics.length > route.maxMetrics) {
    return reject(
      "too_large",
      `Sparkplug payload has ${wireMetrics.length} metrics; the limit is ${route.maxMetrics} ` +
        "(--sparkplug-max-metrics)",
    );
  }
  const latestUs = msg.receivedAtUs + limits.maxFutureSkewMs * 1000;
  const rejects: MetricReject[] = [];
  const payloadTs = timeOf(wire.timestamp, latestUs);
  if (typeof payloadTs === "object" && payloadTs !== null) {
    return { kind: "reject", reason: payloadTs.reason, detail: `payload: ${payloadTs.detail}` };
  }
  const seq = unsignedOf(wire.seq);
  const sparkplug: SparkplugMessage = {
    ...topic,
    seq: seq !== null && seq <= 255 ? seq : null,
    bdSeq: null,
    tsUs: payloadTs,
    metrics: [],
    rejects,
  };
  for (let i = 0; i < wireMetrics.length; i++) {
    const metric = metricOf(wireMetrics[i], i, latestUs, limits, rejects);
    if (!metric) continue;
    if (metric.name === "bdSeq") sparkplug.bdSeq = bdSeqOf(metric.value);
    sparkplug.metrics.push(metric);
  }
  if (seq !== null && seq > 255) {
    rejects.push({ reason: "bad_payload", detail: `seq ${seq} is outside 0–255 (ignored)` });
  }
  return { kind: "sparkplug", userId: route.userId, deviceCode, sparkplug };
}

/** A metric as feedline uses it, or null (with a reject) when it cannot be used at all. */
function metricOf(
  m: WireMetric,
  index: number,
  latestUs: number,
  limits: SparkplugLimits,
  rejects: MetricReject[],
): SparkplugMetric | null {
  const has = (field: keyof WireMetric) => Object.hasOwn(m, field);
  const name = has("name") ? m.name! : null;
  const label = name !== null ? `metric "${preview(name)}"` : `metric #${index}`;
  if (name !== null && (name === "" || name.length > MAX_NAME_CHARS || CONTROL_RE.test(name))) {
    rejects.push({
      reason: "bad_payload",
      detail: `${label}: a name must have 1 to ${MAX_NAME_CHARS} printable characters`,
    });
    return null;
  }
  let alias: number | null = null;
  if (has("alias")) {
    alias = unsignedOf(m.alias);
    if (alias === null || !Number.isSafeInteger(alias)) {
      rejects.push({ reason: "bad_payload", detail: `${label}: alias beyond 2^53` });
      return null;
    }
  }
  if (name === null && alias === null) {
    rejects.push({ reason: "bad_payload", detail: `${label}: neither name nor alias` });
    return null;
  }
  const tsUs = timeOf(has("timestamp") ? m.timestamp : undefined, latestUs);
  if (typeof tsUs === "object" && tsUs !== null) {
    rejects.push({ reason: tsUs.reason, detail: `${label}: ${tsUs.detail}` });
    return null;
  }
  return {
    name,
    alias,
    datatype: has("datatype") ? m.datatype! : null,
    tsUs,
    value: valueOf(m, has, limits.maxTextLength),
  };
}

function valueOf(
  m: WireMetric,
  has: (field: keyof WireMetric) => boolean,
  maxTextLength: number,
): MetricValue {
  if (m.isNull === true) return { kind: "null" };
  if (has("intValue")) return { kind: "int", bits: m.intValue! >>> 0 };
  if (has("longValue")) {
    const v = m.longValue!;
    return typeof v === "number"
      ? { kind: "long", low: v >>> 0, high: Math.floor(v / 0x1_0000_0000) >>> 0 }
      : { kind: "long", low: v.low >>> 0, high: v.high >>> 0 };
  }
  if (has("floatValue") || has("doubleValue")) {
    const n = has("doubleValue") ? m.doubleValue! : m.floatValue!;
    return Number.isFinite(n)
      ? { kind: "float", n }
      : { kind: "invalid", detail: `${n} is not a finite number` };
  }
  if (has("booleanValue")) return { kind: "bool", n: m.booleanValue ? 1 : 0 };
  if (has("stringValue")) {
    const s = m.stringValue!;
    if (s.length > maxTextLength) {
      return { kind: "invalid", detail: `text value longer than ${maxTextLength} characters` };
    }
    if (CONTROL_RE.test(s)) {
      return { kind: "invalid", detail: "text value contains control characters" };
    }
    return { kind: "text", s };
  }
  if (has("bytesValue")) return { kind: "unsupported", field: "bytes_value" };
  if (has("datasetValue")) return { kind: "unsupported", field: "dataset_value" };
  if (has("templateValue")) return { kind: "unsupported", field: "template_value" };
  if (has("extensionValue")) return { kind: "unsupported", field: "extension_value" };
  return { kind: "none" };
}

/** The bdSeq metric's value (an Int64 by the specification; any integer is taken). */
function bdSeqOf(value: MetricValue): number | null {
  if (value.kind === "int") return value.bits;
  if (value.kind === "long") return value.high * 0x1_0000_0000 + value.low;
  return null;
}

/** A time that cannot be used, and why. */
interface BadTime {
  reason: "bad_timestamp" | "future_timestamp";
  detail: string;
}

/**
 * A Sparkplug time (ms since the epoch) in µs; null when absent; why not when it is
 * before 2000, after 9999, or further ahead of the receive time than the skew allows.
 */
function timeOf(v: WireLong | undefined, latestUs: number): number | null | BadTime {
  const ms = unsignedOf(v);
  if (ms === null) return null;
  const us = ms * 1000;
  if (!(us >= MIN_TS_US && us <= MAX_TS_US)) {
    return { reason: "bad_timestamp", detail: `time ${ms} (ms since the epoch) is not plausible` };
  }
  if (us > latestUs) {
    return {
      reason: "future_timestamp",
      detail: `timestamp ${formatTimestamp(us)} is in the future`,
    };
  }
  return us;
}

function preview(name: string): string {
  return name.length > 60 ? `${name.slice(0, 60)}…` : name;
}

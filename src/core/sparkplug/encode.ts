/**
 * Sparkplug B payloads made from plain values: what `simulate --format sparkplug`, the
 * benchmarks and the tests publish. The datatype says which value field a value goes in,
 * as the specification puts it (8- to 32-bit integers in int_value, two's complement for
 * the signed ones; 64-bit ones and DateTime in long_value).
 */
import { DATATYPES, encodeWire, type WireMetric } from "./schema.ts";

/** One metric to encode: a BIRTH names it (and gives its alias and datatype), DATA by alias. */
export interface MetricSpec {
  name?: string;
  alias?: number;
  /** Needed to place `value`; a DATA may omit it when `datatypeOfValue` can tell. */
  datatype?: number;
  /** false: `datatype` only places the value and is not sent (DATA leaves it to the BIRTH). */
  sendDatatype?: false;
  value?: number | boolean | string | null;
  /** ms since the epoch */
  timestamp?: number;
}

/** A payload to encode. */
export interface PayloadSpec {
  /** ms since the epoch */
  timestamp?: number;
  seq?: number;
  metrics: MetricSpec[];
}

/** Encodes `spec` as a Sparkplug B payload. */
export function encodeSparkplug(spec: PayloadSpec): Uint8Array {
  return encodeWire({
    ...(spec.timestamp !== undefined ? { timestamp: spec.timestamp } : {}),
    ...(spec.seq !== undefined ? { seq: spec.seq } : {}),
    metrics: spec.metrics.map(metricOf),
  });
}

function metricOf(m: MetricSpec): WireMetric {
  const out: WireMetric = {};
  if (m.name !== undefined) out.name = m.name;
  if (m.alias !== undefined) out.alias = m.alias;
  if (m.timestamp !== undefined) out.timestamp = m.timestamp;
  if (m.datatype !== undefined && m.sendDatatype !== false) out.datatype = m.datatype;
  const v = m.value;
  if (v === undefined) return out;
  if (v === null) {
    out.isNull = true;
    return out;
  }
  const type = m.datatype ?? datatypeOfValue(v);
  switch (type) {
    case DATATYPES.Int8:
    case DATATYPES.Int16:
    case DATATYPES.Int32:
    case DATATYPES.UInt8:
    case DATATYPES.UInt16:
    case DATATYPES.UInt32:
      out.intValue = Number(v) >>> 0;
      break;
    case DATATYPES.Int64:
    case DATATYPES.UInt64:
    case DATATYPES.DateTime:
      out.longValue = longBits(Number(v));
      break;
    case DATATYPES.Float:
      out.floatValue = Number(v);
      break;
    case DATATYPES.Double:
      out.doubleValue = Number(v);
      break;
    case DATATYPES.Boolean:
      out.booleanValue = Boolean(v);
      break;
    default:
      out.stringValue = String(v);
  }
  return out;
}

/** The datatype a plain value is sent as when none is given: Double, Boolean or String. */
export function datatypeOfValue(v: number | boolean | string): number {
  return typeof v === "number"
    ? DATATYPES.Double
    : typeof v === "boolean"
    ? DATATYPES.Boolean
    : DATATYPES.String;
}

/** A 64-bit integer's two's complement bits (negative Int64 values included). */
function longBits(n: number): { low: number; high: number; unsigned: true } {
  const bits = BigInt.asUintN(64, BigInt(Math.trunc(n)));
  return { low: Number(bits & 0xffffffffn), high: Number(bits >> 32n), unsigned: true };
}

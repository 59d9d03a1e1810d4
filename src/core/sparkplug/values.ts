/**
 * A Sparkplug B metric's value read by its datatype (docs/topics-and-payloads.md,
 * "Sparkplug B"): the integers (8 to 64 bits, signed or not), Float, Double, Boolean (1 or
 * 0), DateTime (ms since the epoch, as a number), String, Text and UUID (as text); any
 * other datatype is `sparkplug_unsupported_type`, a value that does not fit its datatype
 * `bad_payload`. Pure.
 */
import type { Reading } from "../message.ts";
import type { MetricReject, SparkplugMetric } from "./model.ts";
import { sparkplugFeedKey } from "./names.ts";
import { datatypeName, DATATYPES } from "./schema.ts";

/** Datatypes whose values are readings: the numbers, Boolean and the texts. */
export function isReadable(datatype: number): boolean {
  return datatype >= DATATYPES.Int8 && datatype <= DATATYPES.UUID;
}

/** One metric as a reading; a reject; or null when it has no value now (`is_null`). */
export function readingOf(
  metric: SparkplugMetric,
  name: string,
  datatype: number | null,
  deviceCode: string,
  payloadTsUs: number | null,
): Reading | MetricReject | null {
  const v = metric.value;
  if (v.kind === "null" || v.kind === "none") return null;
  const label = `metric "${name.length > 60 ? `${name.slice(0, 60)}…` : name}"`;
  if (v.kind === "invalid") return { reason: "bad_payload", detail: `${label}: ${v.detail}` };
  if (v.kind === "unsupported" || (datatype !== null && !isReadable(datatype))) {
    const what = datatype !== null
      ? datatypeName(datatype)
      : v.kind === "unsupported"
      ? v.field
      : "?";
    return {
      reason: "sparkplug_unsupported_type",
      detail: `${label}: ${what} values are not supported (numbers, Boolean and texts are)`,
    };
  }
  const feedKey = sparkplugFeedKey(deviceCode, name);
  if (feedKey === null) {
    return {
      reason: "bad_payload",
      detail: `${label}: with the device code it makes a feed key over 128 characters`,
    };
  }
  const read = valueOf(v, datatype);
  if (typeof read === "string") return { reason: "bad_payload", detail: `${label}: ${read}` };
  return { feedKey, value: read.value, text: read.text, tsUs: metric.tsUs ?? payloadTsUs };
}

const TWO_32 = 0x1_0000_0000;

/** A value read by its datatype; a text saying why not. */
function valueOf(
  v: SparkplugMetric["value"],
  datatype: number | null,
): { value: number | null; text: string | null } | string {
  const num = (value: number) => ({ value, text: null });
  switch (v.kind) {
    case "bool":
      return datatype === null || datatype === DATATYPES.Boolean
        ? num(v.n)
        : mismatch(datatype, "a Boolean");
    case "float":
      return datatype === null || datatype === DATATYPES.Float || datatype === DATATYPES.Double
        ? num(v.n)
        : mismatch(datatype, "a floating-point value");
    case "text":
      return datatype === null || datatype === DATATYPES.String || datatype === DATATYPES.Text ||
          datatype === DATATYPES.UUID
        ? { value: null, text: v.s }
        : mismatch(datatype, "a text");
    case "int":
    case "long": {
      // Sparkplug puts 8-, 16- and 32-bit integers in int_value (two's complement for the
      // signed ones) and 64-bit ones in long_value; some publishers use the other field,
      // so the datatype decides how the low bits read.
      const low = v.kind === "int" ? v.bits : v.low;
      const high = v.kind === "int" ? 0 : v.high;
      return integerOf(low, high, datatype);
    }
    default:
      return "no usable value"; // null, none, unsupported and invalid are told apart before
  }
}

/** An integer's bits read by its datatype. */
function integerOf(low: number, high: number, datatype: number | null) {
  const num = (value: number) => ({ value, text: null });
  switch (datatype) {
    case DATATYPES.Int8:
      return num((low << 24) >> 24);
    case DATATYPES.Int16:
      return num((low << 16) >> 16);
    case DATATYPES.Int32:
      return num(low | 0);
    case DATATYPES.UInt8:
      return num(low & 0xff);
    case DATATYPES.UInt16:
      return num(low & 0xffff);
    case DATATYPES.UInt32:
      return num(low >>> 0);
    case DATATYPES.Int64:
      return num((high | 0) * TWO_32 + (low >>> 0));
    case DATATYPES.UInt64:
    case DATATYPES.DateTime:
      return num((high >>> 0) * TWO_32 + (low >>> 0));
    case null:
      return "an integer without a datatype (neither the metric nor its BIRTH has one)";
    default:
      return mismatch(datatype, "an integer");
  }
}

function mismatch(datatype: number, what: string): string {
  return `datatype ${datatypeName(datatype)} but ${what} was sent`;
}

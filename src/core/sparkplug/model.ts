/**
 * What a Sparkplug B message decodes to, before its aliases are resolved: the processor
 * resolves them against the recorded BIRTH state (src/ingest/write/sparkplug.ts) and turns
 * each metric into a reading (docs/topics-and-payloads.md, "Sparkplug B"). Imports nothing
 * of ours, so the message model (src/core/message.ts) can name it.
 */
import type { SparkplugTopic } from "./topic.ts";

/** The reject reasons a single metric can get (a subset of `RejectReason`). */
export type MetricRejectReason =
  | "bad_payload"
  | "bad_timestamp"
  | "future_timestamp"
  | "sparkplug_unsupported_type"
  | "sparkplug_unknown_alias";

/** A metric that cannot be used, with its reason (a `ReadingReject`). */
export interface MetricReject {
  reason: MetricRejectReason;
  detail: string;
}

/**
 * A metric's value as sent, checked as far as it can be without its datatype (which a
 * DATA message usually leaves to the BIRTH): texts bounded and printable, floats finite.
 */
export type MetricValue =
  /** `int_value`: 32 bits, read by the datatype as signed or unsigned. */
  | { kind: "int"; bits: number }
  /** `long_value`: 64 bits as two halves, read by the datatype. */
  | { kind: "long"; low: number; high: number }
  | { kind: "float"; n: number }
  | { kind: "bool"; n: 0 | 1 }
  | { kind: "text"; s: string }
  /** `is_null`: the metric has no value now; not a reading. */
  | { kind: "null" }
  /** No value field at all (a BIRTH may declare a metric without one). */
  | { kind: "none" }
  /** `bytes_value`, `dataset_value`, `template_value`, `extension_value`. */
  | { kind: "unsupported"; field: string }
  /** A text too long or with control characters, a float not finite. */
  | { kind: "invalid"; detail: string };

/** One metric of a payload. */
export interface SparkplugMetric {
  /** Null when the metric goes by its alias alone (DATA). */
  name: string | null;
  /** Null when the metric has none. */
  alias: number | null;
  /** Null when the metric leaves it to its BIRTH. */
  datatype: number | null;
  /** The metric's own time in µs since the epoch, null when it has none. */
  tsUs: number | null;
  value: MetricValue;
}

/** A decoded Sparkplug B message. */
export interface SparkplugMessage extends SparkplugTopic {
  /** The payload's `seq` (0–255), null when absent (NDEATH has none). */
  seq: number | null;
  /** The `bdSeq` metric of an NBIRTH or NDEATH, null when absent. */
  bdSeq: number | null;
  /** The payload's time in µs since the epoch, null when absent. */
  tsUs: number | null;
  metrics: SparkplugMetric[];
  /** Metrics that could not be used at all (bad time, bad name, alias out of range). */
  rejects: MetricReject[];
}

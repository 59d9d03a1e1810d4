/**
 * The shapes that flow between pipeline stages. The MQTT source and the file reader
 * both produce `Inbound`; `decode` turns it into a `Decoded`; the processor turns a batch
 * of those into a `BatchResult` with one outcome (stored, rejected, skipped) per message.
 */

import type { SparkplugMessage } from "./sparkplug/model.ts";

/** MQTT quality of service. */
export type Qos = 0 | 1 | 2;

/**
 * The payload formats of readings (docs/topics-and-payloads.md): a bare value, a JSON
 * object with value and time, or many feeds of one device in one message.
 */
export type PayloadFormat = "plain" | "json" | "bulk";
export const PAYLOAD_FORMATS: readonly PayloadFormat[] = ["plain", "json", "bulk"];

/** A message as it arrived, before any parsing. */
export interface Inbound {
  topic: string;
  payload: Uint8Array;
  /**
   * The payload's size as received, when `payload` keeps only its head: a message
   * rejected at decode keeps what its reject row stores (src/ingest/write/rejects.ts
   * `rejectKeepsBytes`), and serve reads an oversized PUBLISH keeping only that much
   * (src/mqtt/publish_parser.ts). Absent: `payload` is whole.
   */
  payloadSize?: number;
  qos: Qos;
  retain: boolean;
  /** Receive time in microseconds since the Unix epoch. */
  receivedAtUs: number;
  /**
   * Replay: the input line had no receive time (`mosquitto_sub -v`), so `receivedAtUs` is
   * when it was read, and a reading without a device timestamp gets a new key each time.
   */
  timeless?: true;
}

/** The payload's size as received, whether `payload` is whole or only its head. */
export function payloadSizeOf(msg: Inbound): number {
  return msg.payloadSize ?? msg.payload.byteLength;
}

/**
 * Why a message was rejected: kept in `ingest_rejects.reason`. A closed set, documented
 * in docs/topics-and-payloads.md; add to it there too.
 */
export type RejectReason =
  | "bad_topic"
  | "bad_user_id"
  | "bad_payload"
  | "bad_timestamp"
  | "bad_status"
  | "too_large"
  | "future_timestamp"
  | "unknown_feed"
  | "unknown_device"
  | "unknown_tenant"
  | "out_of_range"
  | "value_conflict"
  | "db_rejected"
  | "internal_error"
  | "sparkplug_unknown_alias"
  | "sparkplug_unsupported_type";

/** All reject reasons, for metrics and docs. */
export const REJECT_REASONS: readonly RejectReason[] = [
  "bad_topic",
  "bad_user_id",
  "bad_payload",
  "bad_timestamp",
  "bad_status",
  "too_large",
  "future_timestamp",
  "unknown_feed",
  "unknown_device",
  "unknown_tenant",
  "out_of_range",
  "value_conflict",
  "db_rejected",
  "internal_error",
  "sparkplug_unknown_alias",
  "sparkplug_unsupported_type",
];

/**
 * Why a reading was skipped: counted, not kept. Inactive feeds are switched off on
 * purpose; duplicates are the same reading again (redelivery, replay); `retained` is an
 * old retained reading or status without a time of its own, re-sent by the broker on
 * subscribe; `retained_cleared` is the empty retained message that clears one;
 * `not_mapped` is a message whose mapping rule says it is not data (its `when` does not
 * hold: a Shelly button event on the topic of its status notifications).
 * `sparkplug_stale_death` is a Sparkplug NDEATH whose bdSeq is not the last NBIRTH's (the
 * will of an older session, docs/topics-and-payloads.md, "Sparkplug B").
 */
export type SkipReason =
  | "inactive_feed"
  | "duplicate"
  | "retained"
  | "retained_cleared"
  | "not_mapped"
  | "sparkplug_stale_death";

/** All skip reasons. */
export const SKIP_REASONS: readonly SkipReason[] = [
  "inactive_feed",
  "duplicate",
  "retained",
  "retained_cleared",
  "not_mapped",
  "sparkplug_stale_death",
];

/** One value for one feed. */
export interface Reading {
  feedKey: string;
  /** Numeric value, or null for a text value. */
  value: number | null;
  /** Text value (`ON`, `open`), or null for a number. */
  text: string | null;
  /** Device timestamp in µs since the epoch, or null to use the receive time. */
  tsUs: number | null;
  /**
   * With `tsUs` null: µs after the message's receive time this reading is stamped at
   * (absent: 0). Set on the second and later untimed entries of one feed in a many-feeds
   * message, so each has a key of its own (src/core/decode.ts `spreadReceiveStamps`).
   */
  receiveOffsetUs?: number;
}

/** A reading (or a bulk entry) that could not be used, with its reason. */
export interface ReadingReject {
  reason: RejectReason;
  detail: string;
}

/** Device status words we accept. */
export type DeviceStatus = "online" | "offline";

/**
 * Whose a message is. `userId` is a lower-case UUID, unless `tenantAlias` is set: a rule
 * of a mappings file named the tenant by an alias (docs/topics-and-payloads.md,
 * "Mappings"), which the processor resolves through `tenant_aliases`
 * (src/ingest/write/lookups.ts `lookupTenants`); `userId` is then "".
 */
export interface Owner {
  userId: string;
  deviceCode: string;
  tenantAlias?: string;
}

/** A message of readings, after topic and payload parsing. */
export interface DecodedReadings extends Owner {
  kind: "readings";
  readings: Reading[];
  /** Entries of a bulk message that could not be parsed. */
  rejects: ReadingReject[];
}

/** A device status message, after topic and payload parsing. */
export interface DecodedStatus extends Owner {
  kind: "status";
  status: DeviceStatus;
  /** The JSON payload when the device sent an object, for the history row. */
  details: Record<string, unknown> | null;
  tsUs: number | null;
}

/** A Sparkplug B message, its aliases not yet resolved (src/ingest/write/sparkplug.ts). */
export interface DecodedSparkplug extends Owner {
  kind: "sparkplug";
  sparkplug: SparkplugMessage;
}

/** A message after topic and payload parsing. */
export type Decoded =
  | DecodedReadings
  | DecodedStatus
  /**
   * A Sparkplug B message (src/core/sparkplug/decode.ts): its metrics become readings,
   * and its BIRTH or DEATH a status, once the processor resolved its aliases against the
   * recorded BIRTH state (src/ingest/write/sparkplug.ts).
   */
  | DecodedSparkplug
  | { kind: "reject"; reason: RejectReason; detail: string }
  /** Nothing to store, on purpose (e.g. the empty payload that clears a retained message). */
  | { kind: "skip"; reason: SkipReason };

/**
 * Sends the acknowledgement of one message to its source (a PUBACK); called once the
 * message's outcome is durable, after its batch committed.
 */
export type Ack = () => void;

/** A message as received, with what its topic and payload decoded to: what the queues hold and the processor writes. */
export interface DecodedMessage {
  inbound: Inbound;
  decoded: Decoded;
}

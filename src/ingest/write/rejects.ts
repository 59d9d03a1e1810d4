/**
 * The writer of the dead letter, `ingest_rejects`: one row per rejected message and
 * reason, topic, detail and payload bounded. A message's receive time is unique per
 * process (src/clock.ts), so a re-processed batch hits the unique key (received_at,
 * reason, md5(topic)) and does not dead-letter the same message twice. This write must not
 * fail for anything a message holds: rows the database still refuses are isolated, and
 * each is written again as a last-resort row that keeps only the receive time, the reason
 * and the error.
 */
import { Buffer } from "node:buffer";
import type { DecodedMessage, RejectReason } from "../../core/message.ts";
import { timestampOfUs } from "../../db/timestamps.ts";
import type { Transaction } from "../../db/transaction.ts";
import { insertIsolated } from "./isolation.ts";
import type { RejectRow } from "./rows.ts";

/** Longest topic kept in `ingest_rejects` (longer ones cannot be valid topics anyway). */
export const MAX_REJECT_TOPIC_CHARS = 2048;
/** Longest detail kept in `ingest_rejects`. */
export const MAX_REJECT_DETAIL_CHARS = 2000;
/** Bytes of a rejected payload kept, unless `--reject-payload-cap` says (the size is kept). */
export const DEFAULT_REJECT_PAYLOAD_CAP = 1024;

/**
 * Reasons that only the state of other messages or a registration decides, so that the
 * message is to be replayed once that state arrived (`replay --rejects`, serve's
 * re-processing on registration, src/ingest/reprocess.ts): every reject row of a message
 * with one of them keeps its whole payload, whatever the cap (a Sparkplug DATA whose
 * BIRTH is not recorded yet, docs/topics-and-payloads.md, "Sparkplug B"; a feed, device
 * or tenant alias not registered yet, docs/replay.md). The payload is bounded all the
 * same, by --max-payload-bytes.
 */
export const REPLAYED_WHOLE: ReadonlySet<RejectReason> = new Set([
  "sparkplug_unknown_alias",
  "unknown_feed",
  "unknown_device",
  "unknown_tenant",
]);

/** The reasons a registration (a feed, a device, a tenant alias) fixes. */
export const FIXED_BY_REGISTRATION: readonly RejectReason[] = [
  "unknown_feed",
  "unknown_device",
  "unknown_tenant",
];

/**
 * How many payload bytes a reject row for `reason` keeps: the one place that decides. The
 * intake trims a message rejected at decode to it before the message is queued
 * (src/ingest/intake.ts), so a queued reject holds no more than its row will store.
 */
export function rejectKeepsBytes(reason: RejectReason, payloadCap: number): number {
  return REPLAYED_WHOLE.has(reason) ? Infinity : payloadCap;
}

/**
 * One reject row per message and reason: the details of a bulk message's entries are
 * joined. Messages keep the order in which their first reject came.
 */
export function mergeRejects(rejects: RejectRow[]): RejectRow[] {
  if (rejects.length < 2) return rejects;
  const byMessage = new Map<number, Map<RejectReason, RejectRow>>();
  for (const r of rejects) {
    let reasons = byMessage.get(r.message);
    if (!reasons) byMessage.set(r.message, reasons = new Map());
    const existing = reasons.get(r.reason);
    if (existing) {
      existing.detail = `${existing.detail}; ${r.detail}`.slice(0, MAX_REJECT_DETAIL_CHARS);
    } else {
      reasons.set(r.reason, { ...r });
    }
  }
  return [...byMessage.values()].flatMap((m) => [...m.values()]);
}

/** Writes the (merged) rejects of `batch`; see above. */
export async function insertRejects(
  tx: Transaction,
  batch: readonly DecodedMessage[],
  rejects: RejectRow[],
  payloadCap: number,
): Promise<void> {
  if (rejects.length === 0) return;
  // Every row of a message keeps the most any of its reasons keeps.
  const keeps = new Map<number, number>();
  for (const r of rejects) {
    keeps.set(
      r.message,
      Math.max(keeps.get(r.message) ?? 0, rejectKeepsBytes(r.reason, payloadCap)),
    );
  }
  const rows = rejects.map((r) => rejectRecord(batch[r.message], r, keeps.get(r.message)!));
  const { poison } = await insertIsolated(tx, rows, insertRejectRows);
  if (poison.length === 0) return;
  const fallback = poison.map(({ row, detail }) => ({
    topic: "",
    payload: "",
    size: row.size,
    reason: row.reason,
    detail: `could not store this reject as it came (${detail})`.slice(0, MAX_REJECT_DETAIL_CHARS),
    receivedUs: row.receivedUs,
    qos: row.qos,
    retain: row.retain,
  }));
  await insertRejectRows(tx, fallback);
}

interface RejectRecord {
  topic: string;
  /** base64 of the capped payload */
  payload: string;
  size: number;
  reason: string;
  detail: string;
  receivedUs: number;
  qos: number;
  retain: boolean;
}

function rejectRecord({ inbound }: DecodedMessage, r: RejectRow, payloadCap: number): RejectRecord {
  const bytes = inbound.payload;
  return {
    topic: safeText(inbound.topic, MAX_REJECT_TOPIC_CHARS),
    payload: Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.byteLength, payloadCap))
      .toString("base64"),
    size: inbound.payloadSize ?? bytes.byteLength,
    reason: r.reason,
    detail: safeText(r.detail, MAX_REJECT_DETAIL_CHARS),
    receivedUs: inbound.receivedAtUs,
    qos: inbound.qos,
    retain: inbound.retain,
  };
}

// NUL cannot be stored in a PostgreSQL text column; MQTT forbids it in topics (MQTT 5
// §1.5.4) but a broker may still pass one through. Stored texts are bounded too: a
// topic may be 64 KB, and the dead letter must take any message.
function safeText(text: string, max: number): string {
  const bounded = text.length > max ? text.slice(0, max) : text;
  return bounded.includes("\u0000") ? bounded.replaceAll("\u0000", "\ufffd") : bounded;
}

async function insertRejectRows(tx: Transaction, rows: RejectRecord[]): Promise<number> {
  const res = await tx`
    insert into ingest_rejects
      (topic, payload, payload_size, reason, detail, received_at, qos, retain)
    select t, decode(p, 'base64'), s, r, d, ${timestampOfUs(tx, "a")}, q, k::boolean
    from unnest(${rows.map((r) => r.topic)}::text[], ${rows.map((r) => r.payload)}::text[],
                ${rows.map((r) => r.size)}::int4[], ${rows.map((r) => r.reason)}::text[],
                ${rows.map((r) => r.detail)}::text[], ${rows.map((r) => r.receivedUs)}::int8[],
                ${rows.map((r) => r.qos)}::int2[], ${rows.map((r) => String(r.retain))}::text[])
      as x(t, p, s, r, d, a, q, k)
    on conflict do nothing`;
  return res.count;
}

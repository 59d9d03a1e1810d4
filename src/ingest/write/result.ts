/**
 * The totals of a batch (`BatchResult`), built from what its plan and writers did: one
 * outcome per message for the accounting (src/ingest/accounting.ts), counts by reason, and
 * the first rejects for feedback to publishers and the status page.
 */
import type { DecodedMessage, RejectReason, SkipReason } from "../../core/message.ts";
import { count, type Plan } from "./plan.ts";
import type { AlertEvent } from "./alerts.ts";
import type { RejectRow } from "./rows.ts";
import type { StatusesWritten } from "./statuses.ts";
import type { ValueConflict, ValuesWritten } from "./values.ts";

/** Totals of one batch. */
export interface BatchResult {
  messages: number;
  stored: number;
  skipped: Partial<Record<SkipReason, number>>;
  rejected: Partial<Record<RejectReason, number>>;
  /** Status events recorded (one already recorded is absorbed, not counted). */
  statuses: number;
  /**
   * Readings absorbed by the key (feed_id, created_at) although the stored reading has
   * another value: two different readings got one key (two publishers sending one `ts`,
   * or receive times that collided), and the later one is not stored. Each is
   * dead-lettered as `value_conflict` (a message none of whose readings is stored is
   * `rejected`); an anomaly, not a redelivery.
   */
  conflicts: number;
  /** One of them, for the log. */
  conflict?: ValueConflict;
  /**
   * One outcome per message, for accounting: `stored` when any of its readings (or its
   * status) is in the database now, including as an absorbed duplicate; else `rejected`
   * when it has a row in ingest_rejects; else `skipped`.
   */
  outcomes: { stored: number; rejected: number; skipped: number };
  /**
   * The first `MAX_REJECT_DETAILS` rejects of the batch, for feedback to publishers and
   * the status page (the rows themselves are in `ingest_rejects`).
   */
  rejects: RejectDetail[];
  /** Alerts the batch opened and closed (src/ingest/write/alerts.ts); absent: none. */
  alerts?: AlertEvent[];
}

/** One rejected message, as reported in a `BatchResult`. */
export interface RejectDetail {
  topic: string;
  reason: RejectReason;
  detail: string;
  /** The user id of a topic that parsed (null for bad_topic, bad_user_id, ...). */
  userId: string | null;
  receivedAtUs: number;
}

/** Most reject details a `BatchResult` carries; its counts are always complete. */
export const MAX_REJECT_DETAILS = 1000;

/** What a batch's transaction did, for its result. */
export interface BatchWritten {
  plan: Plan;
  values: ValuesWritten;
  statuses: StatusesWritten;
  /** Every reject of the batch, one per message and reason: the rows written. */
  rejects: RejectRow[];
  /** The alerts' events, when a feed of the batch has alert rules. */
  alerts?: AlertEvent[];
}

/** The result of `batch`, written as `written` says. */
export function resultOf(batch: readonly DecodedMessage[], written: BatchWritten): BatchResult {
  const { plan, values, statuses, rejects } = written;
  const skipped = { ...plan.skipped };
  if (values.duplicates > 0) count(skipped, "duplicate", values.duplicates);
  return {
    messages: batch.length,
    stored: values.stored,
    skipped,
    rejected: rejectedCounts(rejects),
    statuses: statuses.recorded,
    conflicts: values.conflicts.length,
    conflict: values.conflicts[0],
    outcomes: outcomesOf(batch.length, written),
    rejects: rejectDetails(batch, rejects),
    ...(written.alerts?.length ? { alerts: written.alerts } : {}),
  };
}

/** The result of a batch of one message that was dead-lettered whole, as `reject`. */
export function deadLetterResult(pending: DecodedMessage, reject: RejectRow): BatchResult {
  return {
    ...emptyResult(1),
    rejected: rejectedCounts([reject]),
    outcomes: { stored: 0, rejected: 1, skipped: 0 },
    rejects: rejectDetails([pending], [reject]),
  };
}

export function emptyResult(messages: number): BatchResult {
  return {
    messages,
    stored: 0,
    skipped: {},
    rejected: {},
    statuses: 0,
    conflicts: 0,
    outcomes: { stored: 0, rejected: 0, skipped: 0 },
    rejects: [],
  };
}

/** The result of two parts of a batch, each written in its own transaction. */
export function mergeResults(a: BatchResult, b: BatchResult): BatchResult {
  const sum = <K extends string>(x: Partial<Record<K, number>>, y: Partial<Record<K, number>>) => {
    const out = { ...x };
    for (const [k, n] of Object.entries(y) as [K, number][]) count(out, k, n);
    return out;
  };
  return {
    messages: a.messages + b.messages,
    stored: a.stored + b.stored,
    skipped: sum(a.skipped, b.skipped),
    rejected: sum(a.rejected, b.rejected),
    statuses: a.statuses + b.statuses,
    conflicts: a.conflicts + b.conflicts,
    conflict: a.conflict ?? b.conflict,
    outcomes: {
      stored: a.outcomes.stored + b.outcomes.stored,
      rejected: a.outcomes.rejected + b.outcomes.rejected,
      skipped: a.outcomes.skipped + b.outcomes.skipped,
    },
    rejects: [...a.rejects, ...b.rejects].slice(0, MAX_REJECT_DETAILS),
    ...(a.alerts || b.alerts ? { alerts: [...a.alerts ?? [], ...b.alerts ?? []] } : {}),
  };
}

function rejectedCounts(rejects: RejectRow[]): Partial<Record<RejectReason, number>> {
  const rejected: Partial<Record<RejectReason, number>> = {};
  for (const r of rejects) count(rejected, r.reason);
  return rejected;
}

const SKIPPED = 0;
const REJECTED = 1;
const STORED = 2;

/** Stored beats rejected (a bulk message with one bad entry is stored), rejected beats skipped. */
function outcomesOf(messages: number, written: BatchWritten): BatchResult["outcomes"] {
  const { plan, values, statuses, rejects } = written;
  const outcome = new Uint8Array(messages); // SKIPPED
  for (const r of rejects) outcome[r.message] = REJECTED;
  for (const v of plan.values) if (!values.notStored?.has(v)) outcome[v.message] = STORED;
  for (const e of plan.statuses) if (!statuses.refused?.has(e)) outcome[e.message] = STORED;
  const outcomes = { stored: 0, rejected: 0, skipped: 0 };
  for (const o of outcome) {
    if (o === STORED) outcomes.stored++;
    else if (o === REJECTED) outcomes.rejected++;
    else if (o === SKIPPED) outcomes.skipped++;
  }
  return outcomes;
}

function rejectDetails(batch: readonly DecodedMessage[], rejects: RejectRow[]): RejectDetail[] {
  return rejects.slice(0, MAX_REJECT_DETAILS).map((r) => {
    const { inbound, decoded } = batch[r.message];
    return {
      topic: inbound.topic,
      reason: r.reason,
      detail: r.detail,
      userId: decoded.kind === "reject" || decoded.kind === "skip" ? null : decoded.userId,
      receivedAtUs: inbound.receivedAtUs,
    };
  });
}

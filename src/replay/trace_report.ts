/**
 * The lines and totals of `feedline trace` (src/replay/trace.ts): what a message became,
 * the filters of a trace, and how a report is printed.
 */
import type postgres from "postgres";
import type { DecodeOptions } from "../core/decode.ts";
import type { Decoded, Inbound } from "../core/message.ts";
import type { TopicMatcher } from "../core/topic_filter.ts";
import { formatMicros } from "../capture/format.ts";

/** What became of a message. */
export type TraceOutcome = "stored" | "rejected" | "skipped" | "duplicate" | "dropped" | "unknown";

/** The outcomes, in the order the totals list them. */
export const TRACE_OUTCOMES: readonly TraceOutcome[] = [
  "stored",
  "rejected",
  "skipped",
  "duplicate",
  "dropped",
  "unknown",
];

/** One message of the trace. */
export interface TraceLine {
  receivedAtUs: number;
  topic: string;
  outcome: TraceOutcome;
  /** Stored readings: `feed @ time`; a reject: `reason: detail`; a skip: its reason. */
  detail: string;
  /** Reject reasons, or the skip reason. */
  reasons: string[];
  /** Stored by serve's re-processing after a registration. */
  reprocessed: boolean;
  /** The device code, when the message names one. */
  device: string | null;
}

/**
 * A device's ingest, over the trace's window (computed on read from the lines: nothing is
 * maintained on the write path, docs/operations.md, "A device says it sent data").
 */
export interface DeviceStats {
  device: string;
  received: number;
  stored: number;
  duplicate: number;
  skipped: number;
  dropped: number;
  unknown: number;
  rejected: Record<string, number>;
  lastSeenUs: number;
  lastReject: { atUs: number; reason: string; detail: string } | null;
}

/** A trace: its lines in receive order, totals over all of them. */
export interface TraceReport {
  source: "capture" | "database";
  lines: TraceLine[];
  totals: Record<TraceOutcome, number> & { received: number };
  /** Per device, by device code ("?" for messages naming none). */
  devices: DeviceStats[];
  notes: string[];
}

/** What to trace. */
export interface TraceQuery {
  sql: postgres.Sql;
  decode: DecodeOptions;
  sinceUs: number;
  untilUs: number | null;
  topicMatches: TopicMatcher | null;
  device: string | null;
  feed: string | null;
  /** serve's capture file; its rotations FILE.1, FILE.2, ... are read too. */
  capture: string | null;
  /** Template of one feed's topic, to show readings found in the database alone. */
  feedTopic: string;
  /** Template of the status topic, likewise for status events. */
  statusTopic: string;
}

/** A message to trace: as it came, as serve decoded it, and whether serve dropped it. */
export interface Candidate {
  inbound: Inbound;
  decoded: Decoded;
  dropped?: string;
}

/** Traces the window. */
export function inWindow(q: TraceQuery, us: number): boolean {
  return us >= q.sinceUs && (q.untilUs === null || us < q.untilUs);
}

/** The capture file and its rotations that exist, oldest first. */
/** Whether a message passes --device and --feed. */
export function ownerMatches(q: TraceQuery, c: Candidate): boolean {
  const d = c.decoded;
  if (q.device !== null) {
    const code = "deviceCode" in d ? d.deviceCode : null;
    // A message the topic already refused names its device only in its topic.
    if (code !== null ? code !== q.device : !c.inbound.topic.split("/").includes(q.device)) {
      return false;
    }
  }
  if (q.feed !== null) {
    if (d.kind === "readings") return d.readings.some((r) => r.feedKey === q.feed);
    if (d.kind === "status" || d.kind === "skip") return false;
    return c.inbound.topic.split("/").includes(q.feed);
  }
  return true;
}

/** A message's identity in the dead letter: its receive time and topic. */
export function messageKey(us: number, topic: string): string {
  return `${us} ${topic}`;
}

/** A report of `lines`, with the totals. */
export function report(
  source: TraceReport["source"],
  lines: TraceLine[],
  notes: string[],
): TraceReport {
  const totals = { received: lines.length } as TraceReport["totals"];
  for (const o of TRACE_OUTCOMES) totals[o] = 0;
  for (const l of lines) totals[l.outcome]++;
  return { source, lines, totals, devices: deviceStats(lines), notes };
}

/** Each device's messages by outcome, last seen and last reject. */
export function deviceStats(lines: TraceLine[]): DeviceStats[] {
  const byDevice = new Map<string, DeviceStats>();
  for (const l of lines) {
    const device = l.device ?? "?";
    let d = byDevice.get(device);
    if (!d) {
      d = {
        device,
        received: 0,
        stored: 0,
        duplicate: 0,
        skipped: 0,
        dropped: 0,
        unknown: 0,
        rejected: {},
        lastSeenUs: 0,
        lastReject: null,
      };
      byDevice.set(device, d);
    }
    d.received++;
    d.lastSeenUs = Math.max(d.lastSeenUs, l.receivedAtUs);
    if (l.outcome === "rejected") {
      for (const r of l.reasons) d.rejected[r] = (d.rejected[r] ?? 0) + 1;
      if (!d.lastReject || d.lastReject.atUs <= l.receivedAtUs) {
        d.lastReject = { atUs: l.receivedAtUs, reason: l.reasons[0] ?? "", detail: l.detail };
      }
    } else d[l.outcome]++;
  }
  return [...byDevice.values()].sort((a, b) => a.device.localeCompare(b.device));
}

/** One line of text per device. */
export function formatDeviceStats(d: DeviceStats): string {
  const rejected = Object.entries(d.rejected).map(([r, n]) => `${r} ${n}`).join(", ");
  return `device ${d.device}: received ${d.received}, stored ${d.stored}, rejected ${
    rejected || "0"
  }, duplicate ${d.duplicate}, skipped ${d.skipped}, dropped ${d.dropped}; last seen ${
    formatMicros(d.lastSeenUs)
  }${
    d.lastReject ? `; last reject ${formatMicros(d.lastReject.atUs)} ${d.lastReject.reason}` : ""
  }`;
}

/** One line of text per message. */
export function formatTraceLine(l: TraceLine): string {
  const outcome = l.reprocessed && l.outcome === "stored" ? "stored (reprocessed)" : l.outcome;
  return `${formatMicros(l.receivedAtUs)}  ${outcome.padEnd(9)}  ${l.topic}  ${l.detail}`;
}

/** The totals line: received = the sum of the outcomes. */
export function formatTraceTotals(t: TraceReport["totals"]): string {
  return `received ${t.received} = ${TRACE_OUTCOMES.map((o) => `${o} ${t[o]}`).join(" + ")}`;
}

/** A message as one JSON object. */
export function traceLineJson(l: TraceLine): Record<string, unknown> {
  return {
    received_at: formatMicros(l.receivedAtUs),
    topic: l.topic,
    outcome: l.outcome,
    reprocessed: l.reprocessed,
    reasons: l.reasons,
    detail: l.detail,
    device: l.device,
  };
}

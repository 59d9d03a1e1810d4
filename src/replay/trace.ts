/**
 * `feedline trace`: what became of each message of a window (docs/operations.md, "A
 * device says it sent data"). Two sources:
 *
 * - serve's capture file (`--capture`), which holds every message received, once: each
 *   is decoded as serve decoded it, then looked up where its outcome would be: its reject
 *   rows (`ingest_rejects`, by receive time and topic), its readings (`feed_values`, by
 *   feed and time: a row with this message's receive time is this message's, one with
 *   another receive time means this one was absorbed as a duplicate), its status event;
 *   a decode skip, an inactive feed and a queue-full drop are told from the message.
 * - the database alone: the readings, rejects and status events of the window. What the
 *   database does not keep (duplicates absorbed, skips, drops) cannot be listed message
 *   by message; the report says so.
 *
 * A message serve re-processed from the dead letter after a registration
 * (src/replay/reprocess.ts) is in `ingest_reprocessed`: shown as stored, reprocessed.
 */
import type postgres from "postgres";
import { readCaptures } from "../capture/reader.ts";
import { decode, type DecodeOptions } from "../core/decode.ts";
import type { Decoded, Inbound } from "../core/message.ts";
import type { TopicMatcher } from "../core/topic_filter.ts";
import { timestampOfUs } from "../db/timestamps.ts";
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
}

/** A trace: its lines in receive order, totals over all of them. */
export interface TraceReport {
  source: "capture" | "database";
  lines: TraceLine[];
  totals: Record<TraceOutcome, number> & { received: number };
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
}

interface Candidate {
  inbound: Inbound;
  decoded: Decoded;
  dropped?: string;
}

/** Traces the window. */
export async function trace(q: TraceQuery): Promise<TraceReport> {
  return q.capture === null ? await traceDatabase(q) : await traceCapture(q, q.capture);
}

function inWindow(q: TraceQuery, us: number): boolean {
  return us >= q.sinceUs && (q.untilUs === null || us < q.untilUs);
}

/** The capture file and its rotations that exist, oldest first. */
async function captureFiles(path: string): Promise<string[]> {
  const rotated: string[] = [];
  for (let n = 1;; n++) {
    try {
      await Deno.stat(`${path}.${n}`);
      rotated.push(`${path}.${n}`);
    } catch {
      break;
    }
  }
  return [...rotated, path];
}

function ownerMatches(q: TraceQuery, c: Candidate): boolean {
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

async function traceCapture(q: TraceQuery, path: string): Promise<TraceReport> {
  const candidates: Candidate[] = [];
  for await (const chunk of readCaptures(await captureFiles(path), { format: "capture" })) {
    for (const item of chunk) {
      if (item.kind !== "message") continue;
      const { inbound } = item;
      if (!inWindow(q, inbound.receivedAtUs)) continue;
      if (q.topicMatches && !q.topicMatches(inbound.topic)) continue;
      const c: Candidate = { inbound, decoded: decode(inbound, q.decode) };
      if (item.dropped) c.dropped = item.dropped;
      if (ownerMatches(q, c)) candidates.push(c);
    }
  }
  const ats = candidates.map((c) => c.inbound.receivedAtUs);
  const rejects = await rejectsAt(q.sql, ats);
  const reprocessed = await reprocessedAt(q.sql, ats);
  const readings = await readingsOf(q.sql, candidates);
  const statuses = await statusesOf(q.sql, candidates);
  const lines = candidates.map((c, i): TraceLine => {
    const { inbound, decoded } = c;
    const key = messageKey(inbound.receivedAtUs, inbound.topic);
    const base = {
      receivedAtUs: inbound.receivedAtUs,
      topic: inbound.topic,
      reprocessed: reprocessed.has(key),
    };
    if (c.dropped) {
      return { ...base, outcome: "dropped", detail: c.dropped, reasons: [c.dropped] };
    }
    const rejected = rejects.get(key);
    if (rejected) return { ...base, outcome: "rejected", ...rejectText(rejected) };
    if (decoded.kind === "skip") {
      return { ...base, outcome: "skipped", detail: decoded.reason, reasons: [decoded.reason] };
    }
    if (decoded.kind === "readings" && decoded.tenantAlias === undefined) {
      return { ...base, ...readingsOutcome(readings.get(i) ?? []) };
    }
    if (decoded.kind === "status") {
      if (statuses.has(i)) {
        return { ...base, outcome: "stored", detail: `status ${decoded.status}`, reasons: [] };
      }
      if (inbound.retain && decoded.tsUs === null) {
        return { ...base, outcome: "skipped", detail: "retained", reasons: ["retained"] };
      }
    }
    return {
      ...base,
      outcome: "unknown",
      detail: decoded.kind === "reject"
        ? `decoded as ${decoded.reason}, but no reject row (deleted by retention?)`
        : "nothing found for it (a Sparkplug or aliased message is traced by its rejects only)",
      reasons: [],
    };
  });
  return report("capture", lines, []);
}

/** The candidates (by index) whose status event is recorded. */
async function statusesOf(sql: postgres.Sql, candidates: Candidate[]): Promise<Set<number>> {
  const idx: number[] = [], users: string[] = [], codes: string[] = [], ats: number[] = [];
  const statuses: string[] = [];
  candidates.forEach(({ inbound, decoded }, i) => {
    if (decoded.kind !== "status" || decoded.tenantAlias !== undefined) return;
    idx.push(i);
    users.push(decoded.userId);
    codes.push(decoded.deviceCode);
    ats.push(decoded.tsUs ?? inbound.receivedAtUs);
    statuses.push(decoded.status);
  });
  if (idx.length === 0) return new Set();
  const rows = await sql<{ i: number }[]>`
    select x.i from unnest(${idx}::int4[], ${users}::uuid[], ${codes}::text[], ${ats}::int8[],
                           ${statuses}::text[]) as x(i, u, c, a, s)
    join devices d on d.user_id = x.u and d.code = x.c
    join device_status_events e
      on e.device_id = d.id and e.at = ${timestampOfUs(sql, "x.a")} and e.status = x.s`;
  return new Set(rows.map((r) => r.i));
}

function messageKey(us: number, topic: string): string {
  return `${us} ${topic}`;
}

interface RejectFound {
  reason: string;
  detail: string;
}

function rejectText(rows: RejectFound[]): { detail: string; reasons: string[] } {
  return {
    detail: rows.map((r) => `${r.reason}: ${r.detail}`).join("; "),
    reasons: rows.map((r) => r.reason),
  };
}

async function rejectsAt(sql: postgres.Sql, ats: number[]): Promise<Map<string, RejectFound[]>> {
  const out = new Map<string, RejectFound[]>();
  if (ats.length === 0) return out;
  const rows = await sql<{ us: string; topic: string; reason: string; detail: string | null }[]>`
    select (extract(epoch from r.received_at) * 1000000)::int8::text as us, r.topic, r.reason,
           r.detail
    from ingest_rejects r
    where r.received_at in (select ${timestampOfUs(sql, "a")} from unnest(${ats}::int8[]) as x(a))
    order by r.id`;
  for (const r of rows) {
    const key = messageKey(Number(r.us), r.topic);
    const list = out.get(key) ?? [];
    list.push({ reason: r.reason, detail: r.detail ?? "" });
    out.set(key, list);
  }
  return out;
}

async function reprocessedAt(sql: postgres.Sql, ats: number[]): Promise<Set<string>> {
  if (ats.length === 0) return new Set();
  const rows = await sql<{ us: string; topic: string }[]>`
    select (extract(epoch from received_at) * 1000000)::int8::text as us, topic
    from ingest_reprocessed
    where received_at in (select ${timestampOfUs(sql, "a")} from unnest(${ats}::int8[]) as x(a))`;
  return new Set(rows.map((r) => messageKey(Number(r.us), r.topic)));
}

interface ReadingFound {
  messageReceivedUs: number;
  feed: string;
  createdUs: number;
  /** Receive time of the stored row; null: none stored at this key. */
  storedReceivedUs: number | null;
  active: boolean | null;
  retainedUntimed: boolean;
}

/** Each readings message's readings, as the database has them (by candidate index). */
async function readingsOf(
  sql: postgres.Sql,
  candidates: Candidate[],
): Promise<Map<number, ReadingFound[]>> {
  const idx: number[] = [], users: string[] = [], keys: string[] = [], created: number[] = [];
  candidates.forEach(({ inbound, decoded }, i) => {
    if (decoded.kind !== "readings" || decoded.tenantAlias !== undefined) return;
    for (const r of decoded.readings) {
      idx.push(i);
      users.push(decoded.userId);
      keys.push(r.feedKey);
      created.push(r.tsUs ?? inbound.receivedAtUs + (r.receiveOffsetUs ?? 0));
    }
  });
  const out = new Map<number, ReadingFound[]>();
  if (idx.length === 0) return out;
  const rows = await sql<
    { i: number; k: string; c: string; r: string | null; active: boolean | null }[]
  >`
    select x.i, x.k, x.c::text as c, f.is_active as active,
           (extract(epoch from v.received_at) * 1000000)::int8::text as r
    from unnest(${idx}::int4[], ${users}::uuid[], ${keys}::text[], ${created}::int8[])
      as x(i, u, k, c)
    left join feeds f on f.user_id = x.u and f.key = x.k
    left join feed_values v on v.feed_id = f.id and v.created_at = ${timestampOfUs(sql, "x.c")}`;
  for (const row of rows) {
    const c = candidates[row.i];
    const list = out.get(row.i) ?? [];
    list.push({
      messageReceivedUs: c.inbound.receivedAtUs,
      feed: row.k,
      createdUs: Number(row.c),
      storedReceivedUs: row.r === null ? null : Number(row.r),
      active: row.active,
      retainedUntimed: c.inbound.retain && Number(row.c) === c.inbound.receivedAtUs,
    });
    out.set(row.i, list);
  }
  return out;
}

function readingsOutcome(
  found: ReadingFound[],
): Pick<TraceLine, "outcome" | "detail" | "reasons"> {
  const stored: string[] = [], duplicates: string[] = [], skipped: string[] = [];
  const unknown: string[] = [];
  for (const f of found) {
    const at = `${f.feed} @ ${formatMicros(f.createdUs)}`;
    if (f.storedReceivedUs === f.messageReceivedUs) stored.push(at);
    else if (f.storedReceivedUs !== null) {
      // The row came with another message: this one's reading was absorbed by its key.
      duplicates.push(
        `${at} (stored from the message received ${formatMicros(f.storedReceivedUs)})`,
      );
    } else if (f.active === false) skipped.push(`${f.feed}: inactive_feed`);
    else if (f.retainedUntimed) skipped.push(`${f.feed}: retained`);
    else if (f.active === null) unknown.push(`${at}: no such feed (deleted since?)`);
    else unknown.push(`${at}: not in feed_values (deleted by retention?)`);
  }
  if (stored.length > 0) {
    const more = [...duplicates.map((d) => `duplicate ${d}`), ...skipped, ...unknown];
    return { outcome: "stored", detail: [stored.join(", "), ...more].join("; "), reasons: [] };
  }
  if (duplicates.length > 0) {
    return { outcome: "duplicate", detail: duplicates.join(", "), reasons: [] };
  }
  if (skipped.length > 0) {
    const reasons = skipped.map((s) => s.split(": ")[1]);
    return { outcome: "skipped", detail: skipped.join(", "), reasons };
  }
  return { outcome: "unknown", detail: unknown.join(", ") || "no readings", reasons: [] };
}

// ---- The database alone ----

async function traceDatabase(q: TraceQuery): Promise<TraceReport> {
  const { sql } = q;
  const since = timestampOfUs(sql, sql`${q.sinceUs}::int8`);
  const until = q.untilUs === null
    ? sql`true`
    : sql`received_at < ${timestampOfUs(sql, sql`${q.untilUs}::int8`)}`;
  const lines: TraceLine[] = [];
  const reprocessed = new Set(
    (await sql<{ us: string }[]>`
      select (extract(epoch from received_at) * 1000000)::int8::text as us
      from ingest_reprocessed where received_at >= ${since} and ${until}`).map((r) => r.us),
  );
  // Readings: one message per receive time (a many-feeds message has several rows).
  const values = await sql<
    { us: string; c: string; key: string; user_id: string; code: string | null }[]
  >`
    select (extract(epoch from v.received_at) * 1000000)::int8::text as us,
           (extract(epoch from v.created_at) * 1000000)::int8::text as c,
           f.key, f.user_id::text, d.code
    from feed_values v join feeds f on f.id = v.feed_id
    left join devices d on d.id = f.device_id
    where v.received_at >= ${since} and ${until}
      and (${q.feed}::text is null or f.key = ${q.feed}::text)
      and (${q.device}::text is null or d.code = ${q.device}::text)
    order by v.received_at, f.key`;
  const byMessage = new Map<string, TraceLine>();
  for (const v of values) {
    const topic = q.feedTopic.replace("{user_id}", v.user_id)
      .replace("{device_code}", v.code ?? "?").replace("{feed_key}", v.key);
    if (q.topicMatches && !q.topicMatches(topic)) continue;
    const at = `${v.key} @ ${formatMicros(Number(v.c))}`;
    const line = byMessage.get(v.us);
    if (line) {
      line.detail += `, ${at}`;
      continue;
    }
    const l: TraceLine = {
      receivedAtUs: Number(v.us),
      topic,
      outcome: "stored",
      detail: at,
      reasons: [],
      reprocessed: reprocessed.has(v.us),
    };
    byMessage.set(v.us, l);
    lines.push(l);
  }
  const rejects = await sql<
    { us: string; topic: string; reason: string; detail: string | null }[]
  >`
    select (extract(epoch from received_at) * 1000000)::int8::text as us, topic, reason, detail
    from ingest_rejects where received_at >= ${since} and ${until}
    order by received_at, id`;
  const rejected = new Map<string, TraceLine>();
  for (const r of rejects) {
    const c: Candidate = {
      inbound: {
        topic: r.topic,
        payload: new Uint8Array(),
        qos: 0,
        retain: false,
        receivedAtUs: 0,
      },
      decoded: { kind: "reject", reason: "bad_payload", detail: "" },
    };
    if (q.topicMatches && !q.topicMatches(r.topic)) continue;
    if (!ownerMatches(q, c)) continue;
    const key = messageKey(Number(r.us), r.topic);
    const line = rejected.get(key);
    const text = `${r.reason}: ${r.detail ?? ""}`;
    if (line) {
      line.detail += `; ${text}`;
      line.reasons.push(r.reason);
      continue;
    }
    const l: TraceLine = {
      receivedAtUs: Number(r.us),
      topic: r.topic,
      outcome: "rejected",
      detail: text,
      reasons: [r.reason],
      reprocessed: false,
    };
    rejected.set(key, l);
    lines.push(l);
  }
  // Status events have no receive time: their time (the device's, or the receive time).
  const statuses = await sql<{ us: string; user_id: string; code: string; status: string }[]>`
    select (extract(epoch from e.at) * 1000000)::int8::text as us, d.user_id::text, d.code,
           e.status
    from device_status_events e join devices d on d.id = e.device_id
    where e.at >= ${since} and ${
    q.untilUs === null ? sql`true` : sql`e.at < ${timestampOfUs(sql, sql`${q.untilUs}::int8`)}`
  }
      and (${q.device}::text is null or d.code = ${q.device}::text)
      and ${q.feed === null ? sql`true` : sql`false`}
    order by e.at`;
  for (const s of statuses) {
    const topic = `${s.user_id}/${s.code}/status`;
    if (q.topicMatches && !q.topicMatches(topic)) continue;
    lines.push({
      receivedAtUs: Number(s.us),
      topic,
      outcome: "stored",
      detail: `status ${s.status}`,
      reasons: [],
      reprocessed: false,
    });
  }
  lines.sort((a, b) => a.receivedAtUs - b.receivedAtUs);
  return report("database", lines, [
    "no capture file: duplicates absorbed, skips and drops are not kept in the database, so " +
    "they are not listed; run serve with --capture FILE and pass it to trace --capture " +
    '(docs/operations.md, "A device says it sent data")',
  ]);
}

function report(
  source: TraceReport["source"],
  lines: TraceLine[],
  notes: string[],
): TraceReport {
  const totals = { received: lines.length } as TraceReport["totals"];
  for (const o of TRACE_OUTCOMES) totals[o] = 0;
  for (const l of lines) totals[l.outcome]++;
  return { source, lines, totals, notes };
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
  };
}

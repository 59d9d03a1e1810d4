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
import { decode } from "../core/decode.ts";
import { timestampOfUs } from "../db/timestamps.ts";
import { formatMicros } from "../capture/format.ts";
import { FeedlineError } from "../errors.ts";
import { traceDatabase } from "./trace_database.ts";
import {
  type Candidate,
  inWindow,
  messageKey,
  ownerMatches,
  report,
  type TraceLine,
  type TraceQuery,
  type TraceReport,
} from "./trace_report.ts";

export * from "./trace_report.ts";

/** Traces the window: from the capture file when given, else from the database alone. */
export async function trace(q: TraceQuery): Promise<TraceReport> {
  return q.capture === null ? await traceDatabase(q) : await traceCapture(q, q.capture);
}

/** Refuses, with one line, a capture file that cannot be read (before anything is opened). */
export async function checkCapture(path: string): Promise<void> {
  try {
    await Deno.stat(path);
  } catch (error) {
    throw new FeedlineError(
      "CONFIG_INVALID",
      `cannot read the capture file ${path}: ${(error as Error).message}; check --capture ` +
        "(the FILE given to serve --capture), or leave it out to trace from the database alone",
    );
  }
}

/** The capture file and its rotations that exist, oldest first (FILE.1 is the oldest). */
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
  await checkCapture(path);
  return [...rotated, path];
}

/** Each message of the capture in the window, and what the database says became of it. */
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
      device: "deviceCode" in decoded ? decoded.deviceCode : null,
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

/**
 * `feedline trace` without a capture file: the readings, rejects and status events the
 * database holds for the window. Duplicates absorbed, skips and drops leave no row, so
 * they cannot be listed; the report says so (docs/operations.md, "A device says it sent
 * data").
 */
import { decode } from "../core/decode.ts";
import { timestampOfUs } from "../db/timestamps.ts";
import { formatMicros } from "../capture/format.ts";
import {
  type Candidate,
  messageKey,
  ownerMatches,
  report,
  type TraceLine,
  type TraceQuery,
  type TraceReport,
} from "./trace_report.ts";

/** Traces the window from the database alone. */
export async function traceDatabase(q: TraceQuery): Promise<TraceReport> {
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
      device: v.code,
    };
    byMessage.set(v.us, l);
    lines.push(l);
  }
  const rejects = await sql<
    {
      us: string;
      topic: string;
      reason: string;
      detail: string | null;
      payload: Uint8Array;
    }[]
  >`
    select (extract(epoch from received_at) * 1000000)::int8::text as us, topic, reason, detail,
           payload
    from ingest_rejects where received_at >= ${since} and ${until}
    order by received_at, id`;
  const rejected = new Map<string, TraceLine>();
  for (const r of rejects) {
    if (q.topicMatches && !q.topicMatches(r.topic)) continue;
    // Decoded again (its payload may be capped) only to learn whose it is.
    const inbound = {
      topic: r.topic,
      payload: new Uint8Array(r.payload),
      qos: 0 as const,
      retain: false,
      receivedAtUs: Number(r.us),
    };
    const c: Candidate = { inbound, decoded: decode(inbound, q.decode) };
    const device = "deviceCode" in c.decoded ? c.decoded.deviceCode : null;
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
      device,
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
    const topic = q.statusTopic.replace("{user_id}", s.user_id).replace("{device_code}", s.code);
    if (q.topicMatches && !q.topicMatches(topic)) continue;
    lines.push({
      receivedAtUs: Number(s.us),
      topic,
      outcome: "stored",
      detail: `status ${s.status}`,
      reasons: [],
      reprocessed: false,
      device: s.code,
    });
  }
  lines.sort((a, b) => a.receivedAtUs - b.receivedAtUs);
  return report("database", lines, [
    "no capture file: duplicates absorbed, skips and drops are not kept in the database, so " +
    "they are not listed; run serve with --capture FILE and pass it to trace --capture " +
    '(docs/operations.md, "A device says it sent data")',
  ]);
}

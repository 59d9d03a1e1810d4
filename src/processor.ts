/**
 * The processor: one batch of decoded messages → one PostgreSQL transaction. It knows
 * nothing of MQTT or files; `serve` and `replay` call it alike, and tests call it
 * directly against a real database.
 *
 * Per batch: one query for all (user_id, feed_key) not in the cache, one multi-row
 * insert of values (`unnest`, `on conflict do nothing`), one update moving each feed's
 * last value forward, one insert of status history and one device update, one insert
 * of rejects. If the value insert fails for a reason that belongs to some rows, the
 * batch is split inside savepoints and only those rows are dead-lettered.
 */
import { Buffer } from "node:buffer";
import type postgres from "postgres";
import { type FeedCache, type FeedInfo, feedKeyOf } from "./feed_cache.ts";
import { floatArrayLiteral, intArrayLiteral, textArrayLiteral } from "./pg_array.ts";
import type { Inbound, Pending, RejectReason, SkipReason } from "./message.ts";

/** Options of the processor. */
export interface ProcessorOptions {
  /** Create unknown users, devices and feeds instead of rejecting (dev mode). */
  autoRegister?: boolean;
  /** Bytes of a rejected payload kept in `ingest_rejects` (the size is recorded). */
  rejectPayloadCap?: number;
  feedCache?: FeedCache;
  /** Do everything, then roll back: for `replay --dry-run`. */
  dryRun?: boolean;
  /**
   * Runs the batch's work (`process`, to be called once) inside its transaction, with
   * room for more statements before and after it: `replay --rejects` deletes the
   * dead-letter rows it re-processes first, so those rejected again are written anew
   * and the rest are gone, in the same commit.
   */
  inTransaction?: (tx: postgres.TransactionSql, process: () => Promise<void>) => Promise<void>;
}

/** Totals of one batch. */
export interface BatchResult {
  messages: number;
  stored: number;
  skipped: Partial<Record<SkipReason, number>>;
  rejected: Partial<Record<RejectReason, number>>;
  /** Status events recorded (one already recorded is absorbed, not counted). */
  statuses: number;
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

/** A rejected message, as it goes into `ingest_rejects`. */
interface RejectRow {
  inbound: Inbound;
  reason: RejectReason;
  detail: string;
}

/** A value row, as it goes into `feed_values`. */
interface ValueRow {
  feedId: number;
  value: number | null;
  text: string | null;
  createdUs: number;
  receivedUs: number;
  /** Index into the batch, so a poison row can be dead-lettered with its message. */
  message: number;
}

const DEFAULT_REJECT_PAYLOAD_CAP = 1024;
const DRY_RUN_ROLLBACK = Symbol("dry-run rollback");

function count<K extends string>(map: Partial<Record<K, number>>, key: K, n = 1): void {
  map[key] = (map[key] ?? 0) + n;
}

// NUL cannot be stored in a PostgreSQL text column; MQTT forbids it in topics (MQTT 5
// §1.5.4) but a broker may still pass one through.
function safeText(text: string): string {
  return text.includes("\u0000") ? text.replaceAll("\u0000", "\ufffd") : text;
}

/**
 * Processes one batch in one transaction and returns its totals. Throws only when the
 * transaction as a whole fails (database unreachable, ...): the caller keeps the batch
 * and retries; nothing was committed.
 */
export async function processBatch(
  sql: postgres.Sql,
  batch: Pending[],
  opts: ProcessorOptions = {},
): Promise<BatchResult> {
  const result: BatchResult = {
    messages: batch.length,
    stored: 0,
    skipped: {},
    rejected: {},
    statuses: 0,
    outcomes: { stored: 0, rejected: 0, skipped: 0 },
    rejects: [],
  };
  if (batch.length === 0) return result;
  try {
    await sql.begin(async (tx) => {
      // A retried batch must not count twice.
      result.stored = 0;
      result.skipped = {};
      result.rejected = {};
      result.statuses = 0;
      result.outcomes = { stored: 0, rejected: 0, skipped: 0 };
      result.rejects = [];
      const work = () => processInTransaction(tx, batch, opts, result);
      await (opts.inTransaction ? opts.inTransaction(tx, work) : work());
      if (opts.dryRun) throw DRY_RUN_ROLLBACK;
    });
  } catch (error) {
    if (error !== DRY_RUN_ROLLBACK) throw error;
  }
  return result;
}

async function processInTransaction(
  tx: postgres.TransactionSql,
  batch: Pending[],
  opts: ProcessorOptions,
  result: BatchResult,
): Promise<void> {
  const rejects: RejectRow[] = [];

  if (opts.autoRegister) await autoRegister(tx, batch);
  const { feeds, keys } = await lookupFeeds(tx, batch, opts.feedCache);
  let k = 0; // index into `keys`: readings in batch order, as lookupFeeds saw them

  const values: ValueRow[] = [];
  const statusIndexes: number[] = [];
  for (let i = 0; i < batch.length; i++) {
    const { inbound, decoded } = batch[i];
    if (decoded.kind === "reject") {
      rejects.push({ inbound, reason: decoded.reason, detail: decoded.detail });
      continue;
    }
    if (decoded.kind === "status") {
      statusIndexes.push(i);
      continue;
    }
    for (const r of decoded.rejects) rejects.push({ inbound, ...r });
    for (const reading of decoded.readings) {
      const feed = feeds.get(keys[k++]);
      if (!feed) {
        rejects.push({
          inbound,
          reason: "unknown_feed",
          detail: `no feed "${reading.feedKey}" for this user`,
        });
      } else if (!feed.isActive) {
        count(result.skipped, "inactive_feed");
      } else if (inbound.retain && reading.tsUs === null) {
        // A retained message replayed on subscribe is an old reading with no time of its
        // own; stamping it "now" would invent a new reading.
        count(result.skipped, "retained");
      } else if (reading.value !== null && outOfRange(feed, reading.value)) {
        rejects.push({
          inbound,
          reason: "out_of_range",
          detail: `${reading.feedKey}: ${reading.value} outside [${feed.thresholdMin ?? "-inf"}, ${
            feed.thresholdMax ?? "inf"
          }]`,
        });
      } else {
        values.push({
          feedId: feed.id,
          value: reading.value,
          text: reading.text,
          // Sources keep receive times strictly increasing (src/clock.ts), so a
          // receive-time stamp never makes two distinct readings collide.
          createdUs: reading.tsUs ?? inbound.receivedAtUs,
          receivedUs: inbound.receivedAtUs,
          message: i,
        });
      }
    }
  }

  const storedMessages = new Set<Inbound>();
  if (values.length > 0) {
    const { inserted, poison } = await insertValues(tx, values);
    const poisoned = new Set(poison.map((p) => p.row));
    for (const v of values) if (!poisoned.has(v)) storedMessages.add(batch[v.message].inbound);
    result.stored += inserted;
    const absorbed = values.length - inserted - poison.length;
    if (absorbed > 0) count(result.skipped, "duplicate", absorbed);
    for (const p of poison) {
      rejects.push({
        inbound: batch[p.row.message].inbound,
        reason: "db_rejected",
        detail: p.detail,
      });
      opts.feedCache?.clear();
    }
    await updateLastValues(
      tx,
      values,
      poison.length > 0 ? new Set(poison.map((p) => p.row)) : null,
    );
  }
  if (statusIndexes.length > 0) {
    result.statuses += await applyStatuses(tx, batch, statusIndexes, rejects, storedMessages);
  }
  const rejectedMessages = new Set<Inbound>();
  if (rejects.length > 0) {
    const merged = mergeRejects(rejects);
    await insertRejects(tx, merged, opts.rejectPayloadCap ?? DEFAULT_REJECT_PAYLOAD_CAP);
    for (const r of merged) {
      count(result.rejected, r.reason);
      rejectedMessages.add(r.inbound);
    }
    reportRejects(batch, merged, result.rejects);
  }
  for (const { inbound } of batch) {
    if (storedMessages.has(inbound)) result.outcomes.stored++;
    else if (rejectedMessages.has(inbound)) result.outcomes.rejected++;
    else result.outcomes.skipped++;
  }
}

function outOfRange(feed: FeedInfo, value: number): boolean {
  return (feed.thresholdMin !== null && value < feed.thresholdMin) ||
    (feed.thresholdMax !== null && value > feed.thresholdMax);
}

/** Dev mode: make every user, device and feed the batch mentions exist. */
async function autoRegister(tx: postgres.TransactionSql, batch: Pending[]): Promise<void> {
  const devices = new Map<string, [string, string]>();
  const feeds = new Map<string, [string, string, string]>();
  for (const { decoded } of batch) {
    if (decoded.kind === "reject") continue;
    devices.set(feedKeyOf(decoded.userId, decoded.deviceCode), [
      decoded.userId,
      decoded.deviceCode,
    ]);
    if (decoded.kind === "readings") {
      for (const r of decoded.readings) {
        feeds.set(feedKeyOf(decoded.userId, r.feedKey), [
          decoded.userId,
          r.feedKey,
          decoded.deviceCode,
        ]);
      }
    }
  }
  if (devices.size === 0) return;
  const users = [...new Set([...devices.values()].map(([u]) => u))];
  await tx`insert into users (id) select * from unnest(${users}::uuid[]) on conflict do nothing`;
  const d = [...devices.values()];
  await tx`
    insert into devices (user_id, code)
    select * from unnest(${d.map((x) => x[0])}::uuid[], ${d.map((x) => x[1])}::text[])
    on conflict do nothing`;
  if (feeds.size === 0) return;
  const f = [...feeds.values()];
  await tx`
    insert into feeds (user_id, key, device_id)
    select x.u, x.k, d.id
    from unnest(${f.map((x) => x[0])}::uuid[], ${f.map((x) => x[1])}::text[],
                ${f.map((x) => x[2])}::text[]) as x(u, k, c)
    left join devices d on d.user_id = x.u and d.code = x.c
    on conflict do nothing`;
}

/**
 * One query for every (user_id, feed_key) of the batch that the cache does not know.
 * Also returns each reading's key, in batch order, so the caller does not build them
 * again (a key is a concatenation; reusing it reuses its cached hash).
 */
async function lookupFeeds(
  tx: postgres.TransactionSql,
  batch: Pending[],
  cache: FeedCache | undefined,
): Promise<{ feeds: Map<string, FeedInfo>; keys: string[] }> {
  const found = new Map<string, FeedInfo>();
  const keys: string[] = [];
  const missingUsers: string[] = [];
  const missingKeys: string[] = [];
  const now = Date.now();
  for (const { decoded } of batch) {
    if (decoded.kind !== "readings") continue;
    for (const r of decoded.readings) {
      const key = feedKeyOf(decoded.userId, r.feedKey);
      keys.push(key);
      if (found.has(key)) continue;
      const cached = cache?.get(key, now);
      if (cached) {
        found.set(key, cached);
      } else {
        // Placeholder so a key is asked for once; removed again if the feed is unknown.
        found.set(key, null as unknown as FeedInfo);
        missingUsers.push(decoded.userId);
        missingKeys.push(r.feedKey);
      }
    }
  }
  if (missingKeys.length > 0) {
    const version = cache?.version;
    const rows = await tx<
      {
        id: string;
        user_id: string;
        key: string;
        is_active: boolean;
        threshold_min: number | null;
        threshold_max: number | null;
      }[]
    >`
      select f.id, f.user_id, f.key, f.is_active, f.threshold_min, f.threshold_max
      from unnest(${missingUsers}::uuid[], ${missingKeys}::text[]) as k(user_id, key)
      join feeds f on f.user_id = k.user_id and f.key = k.key`;
    for (const row of rows) {
      const feed: FeedInfo = {
        id: Number(row.id),
        isActive: row.is_active,
        thresholdMin: row.threshold_min,
        thresholdMax: row.threshold_max,
      };
      const key = feedKeyOf(row.user_id, row.key);
      found.set(key, feed);
      cache?.set(key, feed, now, version);
    }
  }
  for (const [key, feed] of found) if (feed === null) found.delete(key);
  return { feeds: found, keys };
}

interface Poison {
  row: ValueRow;
  detail: string;
}

// SQLSTATE classes that belong to the data of a row rather than to the connection or
// the server: 22 data exception, 23 integrity constraint violation.
function isRowError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return typeof code === "string" && (code.startsWith("22") || code.startsWith("23"));
}

/**
 * Inserts value rows. On a row-level error the rows are split in halves, each half in
 * its own savepoint, until the failing rows are isolated.
 */
async function insertValues(
  tx: postgres.TransactionSql,
  rows: ValueRow[],
): Promise<{ inserted: number; poison: Poison[] }> {
  try {
    return { inserted: await tx.savepoint((sp) => insertValueRows(sp, rows)), poison: [] };
  } catch (error) {
    if (!isRowError(error)) throw error;
    if (rows.length === 1) {
      const e = error as { code?: string; message?: string };
      return { inserted: 0, poison: [{ row: rows[0], detail: `${e.code}: ${e.message}` }] };
    }
    const middle = rows.length >>> 1;
    const a = await insertValues(tx, rows.slice(0, middle));
    const b = await insertValues(tx, rows.slice(middle));
    return { inserted: a.inserted + b.inserted, poison: [...a.poison, ...b.poison] };
  }
}

async function insertValueRows(tx: postgres.TransactionSql, rows: ValueRow[]): Promise<number> {
  const n = rows.length;
  const feedIds = new Array<number>(n);
  const nums = new Array<number | null>(n);
  const texts = new Array<string | null>(n);
  const created = new Array<number>(n);
  const received = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const r = rows[i];
    feedIds[i] = r.feedId;
    nums[i] = r.value;
    texts[i] = r.text;
    created[i] = r.createdUs;
    received[i] = r.receivedUs;
  }
  // Times travel as µs integers: exact, where a float of seconds would lose the last
  // digit and two readings a microsecond apart could collide.
  const res = await tx`
    insert into feed_values (feed_id, value, value_text, created_at, received_at)
    select f, v, t, to_timestamp(0) + c * interval '1 microsecond',
           to_timestamp(0) + r * interval '1 microsecond'
    from unnest(${intArrayLiteral(feedIds)}::int8[], ${floatArrayLiteral(nums)}::float8[],
                ${textArrayLiteral(texts)}::text[], ${intArrayLiteral(created)}::int8[],
                ${intArrayLiteral(received)}::int8[]) as x(f, v, t, c, r)
    on conflict do nothing`;
  return res.count;
}

/** Moves each feed's last value forward: late or replayed data never overwrites newer. */
async function updateLastValues(
  tx: postgres.TransactionSql,
  rows: ValueRow[],
  exclude: Set<ValueRow> | null,
): Promise<void> {
  const latest = new Map<number, ValueRow>();
  for (const r of rows) {
    if (exclude?.has(r)) continue;
    const current = latest.get(r.feedId);
    if (!current || current.createdUs < r.createdUs) latest.set(r.feedId, r);
  }
  if (latest.size === 0) return;
  const ids: number[] = [];
  const vals: string[] = [];
  const ats: number[] = [];
  for (const r of latest.values()) {
    ids.push(r.feedId);
    vals.push(r.text ?? String(r.value));
    ats.push(r.createdUs);
  }
  await tx`
    update feeds f
    set last_value = x.v, last_value_at = x.at, updated_at = now()
    from (select id, v, to_timestamp(0) + c * interval '1 microsecond' as at
          from unnest(${intArrayLiteral(ids)}::int8[], ${textArrayLiteral(vals)}::text[],
                      ${intArrayLiteral(ats)}::int8[]) as u(id, v, c)) x
    where f.id = x.id and (f.last_value_at is null or f.last_value_at < x.at)`;
}

/**
 * Device status: history rows for every message, and each device's current status
 * moved forward in time. A status for a device that is not registered is rejected.
 */
async function applyStatuses(
  tx: postgres.TransactionSql,
  batch: Pending[],
  indexes: number[],
  rejects: RejectRow[],
  applied: Set<Inbound>,
): Promise<number> {
  const users: string[] = [];
  const codes: string[] = [];
  const seen = new Set<string>();
  for (const i of indexes) {
    const d = batch[i].decoded;
    if (d.kind !== "status") continue;
    const key = feedKeyOf(d.userId, d.deviceCode);
    if (seen.has(key)) continue;
    seen.add(key);
    users.push(d.userId);
    codes.push(d.deviceCode);
  }
  const rows = await tx<{ id: string; user_id: string; code: string }[]>`
    select d.id, d.user_id, d.code
    from unnest(${users}::uuid[], ${codes}::text[]) as k(user_id, code)
    join devices d on d.user_id = k.user_id and d.code = k.code`;
  const deviceIds = new Map(rows.map((r) => [feedKeyOf(r.user_id, r.code), Number(r.id)]));

  const evDevice: number[] = [];
  const evStatus: string[] = [];
  const evPayload: (string | null)[] = [];
  const evAt: number[] = [];
  const latest = new Map<number, { status: string; at: number }>();
  for (const i of indexes) {
    const { inbound, decoded: d } = batch[i];
    if (d.kind !== "status") continue;
    const id = deviceIds.get(feedKeyOf(d.userId, d.deviceCode));
    if (id === undefined) {
      rejects.push({
        inbound,
        reason: "unknown_device",
        detail: `no device "${d.deviceCode}" for this user`,
      });
      continue;
    }
    const at = d.tsUs ?? inbound.receivedAtUs;
    applied.add(inbound);
    evDevice.push(id);
    evStatus.push(d.status);
    evPayload.push(d.details ? safeText(JSON.stringify(d.details)) : null);
    evAt.push(at);
    const current = latest.get(id);
    if (!current || current.at <= at) latest.set(id, { status: d.status, at });
  }
  if (evDevice.length === 0) return 0;
  // A status event already recorded (a replay, a redelivery) is absorbed by its key.
  const inserted = await tx`
    insert into device_status_events (device_id, status, payload, at)
    select d, s, p::jsonb, to_timestamp(0) + a * interval '1 microsecond'
    from unnest(${evDevice}::int8[], ${evStatus}::text[], ${evPayload}::text[], ${evAt}::int8[])
      as x(d, s, p, a)
    on conflict do nothing`;
  const ids = [...latest.keys()];
  const statuses = ids.map((id) => latest.get(id)!.status);
  const ats = ids.map((id) => latest.get(id)!.at);
  await tx`
    update devices d
    set status = x.s,
        status_changed_at = case when d.status is distinct from x.s then x.at
                                 else coalesce(d.status_changed_at, x.at) end,
        last_seen_at = x.at
    from (select id, s, to_timestamp(0) + a * interval '1 microsecond' as at
          from unnest(${ids}::int8[], ${statuses}::text[], ${ats}::int8[]) as u(id, s, a)) x
    where d.id = x.id and (d.last_seen_at is null or d.last_seen_at <= x.at)`;
  return inserted.count;
}

/** One reject row per message and reason: a bulk message's details are joined. */
function mergeRejects(rejects: RejectRow[]): RejectRow[] {
  if (rejects.length < 2) return rejects;
  const byMessage = new Map<Inbound, Map<RejectReason, RejectRow>>();
  for (const r of rejects) {
    let reasons = byMessage.get(r.inbound);
    if (!reasons) byMessage.set(r.inbound, reasons = new Map());
    const existing = reasons.get(r.reason);
    if (existing) existing.detail = `${existing.detail}; ${r.detail}`.slice(0, 2000);
    else reasons.set(r.reason, { ...r });
  }
  return [...byMessage.values()].flatMap((m) => [...m.values()]);
}

function reportRejects(batch: Pending[], rejects: RejectRow[], out: RejectDetail[]): void {
  const users = new Map<Inbound, string>();
  for (const { inbound, decoded } of batch) {
    if (decoded.kind !== "reject") users.set(inbound, decoded.userId);
  }
  for (const r of rejects.slice(0, MAX_REJECT_DETAILS)) {
    out.push({
      topic: r.inbound.topic,
      reason: r.reason,
      detail: r.detail,
      userId: users.get(r.inbound) ?? null,
      receivedAtUs: r.inbound.receivedAtUs,
    });
  }
}

/**
 * The dead letter: one row per rejected message and reason, payload capped. A message's
 * receive time is unique per process (src/clock.ts), so a re-processed batch hits the
 * unique key and does not dead-letter the same message twice.
 */
async function insertRejects(
  tx: postgres.TransactionSql,
  rejects: RejectRow[],
  payloadCap: number,
): Promise<void> {
  const n = rejects.length;
  const topics = new Array<string>(n);
  const payloads = new Array<string>(n);
  const sizes = new Array<number>(n);
  const reasons = new Array<string>(n);
  const details = new Array<string>(n);
  const received = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const r = rejects[i];
    const bytes = r.inbound.payload;
    topics[i] = safeText(r.inbound.topic);
    payloads[i] = Buffer.from(
      bytes.buffer,
      bytes.byteOffset,
      Math.min(bytes.byteLength, payloadCap),
    )
      .toString("base64");
    sizes[i] = bytes.byteLength;
    reasons[i] = r.reason;
    details[i] = safeText(r.detail);
    received[i] = r.inbound.receivedAtUs;
  }
  await tx`
    insert into ingest_rejects (topic, payload, payload_size, reason, detail, received_at)
    select t, decode(p, 'base64'), s, r, d, to_timestamp(0) + a * interval '1 microsecond'
    from unnest(${topics}::text[], ${payloads}::text[], ${sizes}::int4[], ${reasons}::text[],
                ${details}::text[], ${received}::int8[]) as x(t, p, s, r, d, a)
    on conflict do nothing`;
}

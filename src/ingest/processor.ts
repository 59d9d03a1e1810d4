/**
 * The processor: one batch of decoded messages → one PostgreSQL transaction. It knows
 * nothing of MQTT or files; `serve` and `replay` call it alike, and tests call it
 * directly against a real database.
 *
 * Per batch: one query for all (user_id, feed_key) not in the cache, one statement that
 * inserts the values (`unnest`) and moves each feed's last value forward, one insert of
 * status history and one device update, one insert of rejects. The values are first
 * written the fast way, without savepoint or `on conflict` (src/ingest/write/fast_or_careful.ts);
 * a batch the fast way cannot write is written again the careful way described next.
 *
 * No message can block a batch (docs/delivery.md, "Poison messages"): every insert of
 * rows that come from messages (values, status events, rejects) is split inside
 * savepoints when the database refuses it, until the refused rows are isolated and
 * dead-lettered; and if the transaction still fails for anything but the database or the
 * connection (src/db/errors.ts), the batch is bisected into separate transactions down to
 * the one message that fails, which is dead-lettered with the error.
 */
import type postgres from "postgres";
import { type FeedCache, type FeedInfo, feedKeyOf } from "./feed_cache.ts";
import { type DeviceCache, deviceKeyOf } from "./device_cache.ts";
import type { Inbound, Pending, RejectReason, SkipReason } from "../core/message.ts";
import { isTransientDbError, sqlStateOf } from "../db/errors.ts";
import { confirmedTransaction } from "../db/transaction.ts";
import { storableJson } from "../core/payload.ts";
import { FastOrCareful } from "./write/fast_or_careful.ts";
import {
  DEFAULT_REJECT_PAYLOAD_CAP,
  insertRejects,
  MAX_REJECT_TOPIC_CHARS,
  mergeRejects,
} from "./write/rejects.ts";
import type { RejectRow, RetainedStatus, StatusEvent, ValueRow } from "./write/rows.ts";
import { type ValueConflict, writeValuesCarefully, writeValuesFast } from "./write/values.ts";
import { writeStatuses } from "./write/statuses.ts";

export type { ValueConflict };

export { MAX_REJECT_TOPIC_CHARS };
import { refusalDetail } from "./write/isolation.ts";

/** Options of the processor. */
export interface ProcessorOptions {
  /** Create unknown users, devices and feeds instead of rejecting (dev mode). */
  autoRegister?: boolean;
  /** Bytes of a rejected payload kept in `ingest_rejects` (the size is recorded). */
  rejectPayloadCap?: number;
  feedCache?: FeedCache;
  /**
   * Reject readings of a device that is not registered under its user, as
   * `unknown_device` (as status messages already are). Off: readings need only their feed
   * (the reference design's behaviour, `--accept-unregistered-devices`).
   */
  requireDevice?: boolean;
  /** Registered devices already seen (`deviceKeyOf(user_id, code)` → device id). */
  deviceCache?: DeviceCache;
  /** Do everything, then roll back: for `replay --dry-run`. */
  dryRun?: boolean;
  /**
   * Runs the batch's work (`process`, to be called once) inside its transaction, with
   * room for more statements before and after it: `replay --rejects` deletes the
   * dead-letter rows it re-processes first, so those rejected again are written anew
   * and the rest are gone, in the same commit.
   */
  inTransaction?: (tx: postgres.TransactionSql, process: () => Promise<void>) => Promise<void>;
  /** Fast or careful writes (src/ingest/write/fast_or_careful.ts); one shared by default. */
  fastOrCareful?: FastOrCareful;
  /** @deprecated The old name of `fastOrCareful`, until serve and the tests are renamed. */
  writePath?: FastOrCareful;
}

// Callers that do not keep their own still learn from one another's fallbacks.
const sharedWays = new FastOrCareful();

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

const DRY_RUN_ROLLBACK = Symbol("dry-run rollback");

function count<K extends string>(map: Partial<Record<K, number>>, key: K, n = 1): void {
  map[key] = (map[key] ?? 0) + n;
}

function emptyResult(messages: number): BatchResult {
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

/**
 * Processes one batch and returns its totals, once PostgreSQL confirmed the commit
 * (src/db/transaction.ts). Throws only for a failure of the database or the connection
 * (src/db/errors.ts; a commit the database did not confirm, and a prepared statement a
 * pooler lost, are among them): the caller keeps the batch and retries; nothing of it
 * needs to be acknowledged yet, and re-processing it is idempotent. Any other failure is
 * isolated to the messages that cause it, which are dead-lettered.
 */
export async function processBatch(
  sql: postgres.Sql,
  batch: Pending[],
  opts: ProcessorOptions = {},
): Promise<BatchResult> {
  const ways = opts.fastOrCareful ?? opts.writePath ?? sharedWays;
  if (ways.fastAllowed()) {
    try {
      const result = await processInOneTransaction(sql, batch, opts, true);
      ways.fastSucceeded();
      return result;
    } catch (error) {
      if (isTransientDbError(error)) throw error;
      // Rolled back whole: written again below, the careful way.
      ways.fastFailed();
    }
  }
  return await processCarefully(sql, batch, opts);
}

/** The careful way: refused rows isolated in savepoints, the rest bisected. */
async function processCarefully(
  sql: postgres.Sql,
  batch: Pending[],
  opts: ProcessorOptions,
): Promise<BatchResult> {
  try {
    return await processInOneTransaction(sql, batch, opts, false);
  } catch (error) {
    if (isTransientDbError(error)) throw error;
    if (batch.length === 1) return await deadLetterAlone(sql, batch[0], opts, error);
    // Each half commits on its own; a retry after a later transient failure re-processes
    // a committed half idempotently (duplicates are absorbed by the keys).
    const middle = batch.length >>> 1;
    const a = await processCarefully(sql, batch.slice(0, middle), opts);
    const b = await processCarefully(sql, batch.slice(middle), opts);
    return mergeResults(a, b);
  }
}

function mergeResults(a: BatchResult, b: BatchResult): BatchResult {
  const sum = <K extends string>(x: Partial<Record<K, number>>, y: Partial<Record<K, number>>) => {
    const out = { ...x };
    for (const [k, n] of Object.entries(y) as [K, number][]) out[k] = (out[k] ?? 0) + n;
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
  };
}

/**
 * The one message of a batch that still fails on its own: dead-lettered with the error,
 * `db_rejected` with its SQLSTATE when the database refused it, else `internal_error`.
 */
async function deadLetterAlone(
  sql: postgres.Sql,
  pending: Pending,
  opts: ProcessorOptions,
  error: unknown,
): Promise<BatchResult> {
  const reject: RejectRow = {
    message: 0,
    reason: sqlStateOf(error) ? "db_rejected" : "internal_error",
    detail: refusalDetail(error),
  };
  const result = emptyResult(1);
  try {
    await confirmedTransaction(sql, async (tx) => {
      const work = () =>
        insertRejects(tx, [pending], [reject], opts.rejectPayloadCap ?? DEFAULT_REJECT_PAYLOAD_CAP);
      await (opts.inTransaction ? opts.inTransaction(tx, work) : work());
      if (opts.dryRun) throw DRY_RUN_ROLLBACK;
    });
  } catch (e) {
    if (e !== DRY_RUN_ROLLBACK) throw e;
  }
  result.rejected[reject.reason] = 1;
  result.outcomes.rejected = 1;
  reportRejects([pending], [reject], result.rejects);
  return result;
}

async function processInOneTransaction(
  sql: postgres.Sql,
  batch: Pending[],
  opts: ProcessorOptions,
  fast: boolean,
): Promise<BatchResult> {
  const result = emptyResult(batch.length);
  if (batch.length === 0) return result;
  try {
    // Counted only once PostgreSQL confirmed the commit (src/db/transaction.ts).
    await confirmedTransaction(sql, async (tx) => {
      // A retried batch must not count twice.
      result.stored = 0;
      result.skipped = {};
      result.rejected = {};
      result.statuses = 0;
      result.conflicts = 0;
      result.conflict = undefined;
      result.outcomes = { stored: 0, rejected: 0, skipped: 0 };
      result.rejects = [];
      const work = () => processInTransaction(tx, batch, opts, result, fast);
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
  fast: boolean,
): Promise<void> {
  const rejects: RejectRow[] = [];

  if (opts.autoRegister) await autoRegister(tx, batch);
  const feedOfReading = await lookupFeeds(tx, batch, opts.feedCache);
  const devices = opts.requireDevice ? await lookupDevices(tx, batch, opts.deviceCache) : null;
  let k = 0; // index into `feedOfReading`: readings in batch order, as lookupFeeds saw them

  const values: ValueRow[] = [];
  const statusIndexes: number[] = [];
  for (let i = 0; i < batch.length; i++) {
    const { inbound, decoded } = batch[i];
    if (decoded.kind === "reject") {
      rejects.push({ message: i, reason: decoded.reason, detail: decoded.detail });
      continue;
    }
    if (decoded.kind === "skip") {
      count(result.skipped, decoded.reason);
      continue;
    }
    if (decoded.kind === "status") {
      statusIndexes.push(i);
      continue;
    }
    if (devices && !devices.has(deviceKeyOf(decoded.userId, decoded.deviceCode))) {
      k += decoded.readings.length;
      rejects.push({
        message: i,
        reason: "unknown_device",
        detail: `no device "${decoded.deviceCode}" for this user`,
      });
      continue;
    }
    for (const r of decoded.rejects) rejects.push({ message: i, ...r });
    for (const reading of decoded.readings) {
      const feed = feedOfReading[k++];
      if (!feed) {
        rejects.push({
          message: i,
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
          message: i,
          reason: "out_of_range",
          detail: `${reading.feedKey}: ${reading.value} outside [${feed.thresholdMin ?? "-inf"}, ${
            feed.thresholdMax ?? "inf"
          }]`,
        });
      } else {
        values.push({
          feedId: feed.id,
          feedKey: reading.feedKey,
          value: reading.value,
          text: reading.text,
          // Sources keep receive times strictly increasing (src/clock.ts) and past the
          // extra stamps of a many-feeds message's repeated feeds (`receiveOffsetUs`), so
          // a receive-time stamp never makes two distinct readings collide.
          createdUs: reading.tsUs ?? inbound.receivedAtUs + (reading.receiveOffsetUs ?? 0),
          receivedUs: inbound.receivedAtUs,
          message: i,
        });
      }
    }
  }

  const storedMessages = new Set<Inbound>();
  // The fast way fails on any refusal (a duplicate included): see processBatch.
  const written = fast ? await writeValuesFast(tx, values) : await writeValuesCarefully(tx, values);
  result.stored += written.stored;
  if (written.duplicates > 0) count(result.skipped, "duplicate", written.duplicates);
  result.conflicts += written.conflicts.length;
  result.conflict ??= written.conflicts[0];
  rejects.push(...written.rejects);
  if (written.refused > 0) opts.feedCache?.clear();
  for (const v of values) {
    if (!written.notStored?.has(v)) storedMessages.add(batch[v.message].inbound);
  }
  if (statusIndexes.length > 0) {
    result.statuses += await applyStatuses(
      tx,
      batch,
      statusIndexes,
      rejects,
      storedMessages,
      result.skipped,
    );
  }
  const rejectedMessages = new Set<Inbound>();
  if (rejects.length > 0) {
    const merged = mergeRejects(rejects);
    await insertRejects(tx, batch, merged, opts.rejectPayloadCap ?? DEFAULT_REJECT_PAYLOAD_CAP);
    for (const r of merged) {
      count(result.rejected, r.reason);
      rejectedMessages.add(batch[r.message].inbound);
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
    if (decoded.kind === "reject" || decoded.kind === "skip") continue;
    devices.set(deviceKeyOf(decoded.userId, decoded.deviceCode), [
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
/**
 * The feed of every reading of the batch, in batch order (undefined: no such feed): from
 * the cache, and for the rest from one query.
 */
async function lookupFeeds(
  tx: postgres.TransactionSql,
  batch: Pending[],
  cache: FeedCache | undefined,
): Promise<(FeedInfo | undefined)[]> {
  const feedOfReading: (FeedInfo | undefined)[] = [];
  // A key the cache does not know → the readings waiting for it; asked for once.
  const waiting = new Map<string, number[]>();
  const missingUsers: string[] = [];
  const missingKeys: string[] = [];
  const now = Date.now();
  for (const { decoded } of batch) {
    if (decoded.kind !== "readings") continue;
    for (const r of decoded.readings) {
      const key = feedKeyOf(decoded.userId, r.feedKey);
      const cached = cache?.get(key, now);
      if (cached) {
        feedOfReading.push(cached);
        continue;
      }
      const readings = waiting.get(key);
      if (readings) {
        readings.push(feedOfReading.length);
      } else {
        waiting.set(key, [feedOfReading.length]);
        missingUsers.push(decoded.userId);
        missingKeys.push(r.feedKey);
      }
      feedOfReading.push(undefined);
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
      for (const i of waiting.get(key) ?? []) feedOfReading[i] = feed;
      cache?.set(key, feed, now, version);
    }
  }
  return feedOfReading;
}

/**
 * The registered devices among those whose readings are in the batch: one query for
 * what the cache does not know. Only found devices are cached (one may be registered
 * any moment).
 */
async function lookupDevices(
  tx: postgres.TransactionSql,
  batch: Pending[],
  cache: DeviceCache | undefined,
): Promise<Set<string>> {
  const known = new Set<string>();
  const asked = new Set<string>();
  const users: string[] = [];
  const codes: string[] = [];
  const now = Date.now();
  for (const { decoded } of batch) {
    if (decoded.kind !== "readings") continue;
    const key = deviceKeyOf(decoded.userId, decoded.deviceCode);
    if (known.has(key) || asked.has(key)) continue;
    if (cache?.get(key, now) !== undefined) {
      known.add(key);
    } else {
      asked.add(key);
      users.push(decoded.userId);
      codes.push(decoded.deviceCode);
    }
  }
  if (users.length === 0) return known;
  const version = cache?.version;
  const rows = await tx<{ id: string; user_id: string; code: string }[]>`
    select d.id, d.user_id, d.code
    from unnest(${users}::uuid[], ${codes}::text[]) as k(user_id, code)
    join devices d on d.user_id = k.user_id and d.code = k.code`;
  for (const row of rows) {
    const key = deviceKeyOf(row.user_id, row.code);
    known.add(key);
    cache?.set(key, Number(row.id), now, version);
  }
  return known;
}

/**
 * Device status: history rows for every message, and each device's current status
 * moved forward in time. A status for a device that is not registered is rejected. A
 * retained status without a time of its own is the broker re-sending an old one on
 * subscribe: it records no event (a restart would otherwise add one each time) and sets
 * the status only of a device that has none yet.
 */
async function applyStatuses(
  tx: postgres.TransactionSql,
  batch: Pending[],
  indexes: number[],
  rejects: RejectRow[],
  applied: Set<Inbound>,
  skipped: Partial<Record<SkipReason, number>>,
): Promise<number> {
  const users: string[] = [];
  const codes: string[] = [];
  const seen = new Set<string>();
  for (const i of indexes) {
    const d = batch[i].decoded;
    if (d.kind !== "status") continue;
    const key = deviceKeyOf(d.userId, d.deviceCode);
    if (seen.has(key)) continue;
    seen.add(key);
    users.push(d.userId);
    codes.push(d.deviceCode);
  }
  const rows = await tx<{ id: string; user_id: string; code: string }[]>`
    select d.id, d.user_id, d.code
    from unnest(${users}::uuid[], ${codes}::text[]) as k(user_id, code)
    join devices d on d.user_id = k.user_id and d.code = k.code`;
  const deviceIds = new Map(rows.map((r) => [deviceKeyOf(r.user_id, r.code), Number(r.id)]));

  const events: StatusEvent[] = [];
  const firstKnown = new Map<number, RetainedStatus>();
  for (const i of indexes) {
    const { inbound, decoded: d } = batch[i];
    if (d.kind !== "status") continue;
    const id = deviceIds.get(deviceKeyOf(d.userId, d.deviceCode));
    if (id === undefined) {
      rejects.push({
        message: i,
        reason: "unknown_device",
        detail: `no device "${d.deviceCode}" for this user`,
      });
    } else if (inbound.retain && d.tsUs === null) {
      count(skipped, "retained");
      firstKnown.set(id, { status: d.status, atUs: inbound.receivedAtUs });
    } else {
      events.push({
        deviceId: id,
        status: d.status,
        payload: d.details ? storableJson(d.details) : null,
        atUs: d.tsUs ?? inbound.receivedAtUs,
        message: i,
      });
    }
  }
  const written = await writeStatuses(tx, events, firstKnown);
  rejects.push(...written.rejects);
  for (const e of events) if (!written.refused?.has(e)) applied.add(batch[e.message].inbound);
  return written.recorded;
}

function reportRejects(batch: Pending[], rejects: RejectRow[], out: RejectDetail[]): void {
  for (const r of rejects.slice(0, MAX_REJECT_DETAILS)) {
    const { inbound, decoded } = batch[r.message];
    out.push({
      topic: inbound.topic,
      reason: r.reason,
      detail: r.detail,
      userId: decoded.kind === "reject" || decoded.kind === "skip" ? null : decoded.userId,
      receivedAtUs: inbound.receivedAtUs,
    });
  }
}

/**
 * The database side of the status page: recent feeds with their last value and a few
 * recent values each, the latest rejects, devices online/offline/stale, the open alerts.
 * These run against production databases, so each is bounded (a LIMIT on every result,
 * index scans where the schema has an index, one short statement timeout) and cached for
 * a moment, so any number of open pages costs one set of queries per `cacheMs`.
 *
 * Plans (PostgreSQL 15, measured in docs/operations.md):
 * - feeds: a scan of the narrow `feed_last_values` (sql/014) with a top-N sort (no index
 *   on `at`, on purpose: it would turn every last-value update into a non-HOT update),
 *   merged per feed with a scan of `feed_last_values_pending` (sql/018: the values not
 *   moved yet, one row per feed per batch since the last move, `--last-value-move-ms`); then
 *   25 primary-key lookups in `feeds`; sparklines: one
 *   backward scan of the `feed_values` primary key (feed_id, created_at) per feed shown.
 * - rejects: a backward scan of `ingest_rejects_message` (received_at leads).
 * - devices: a scan of `devices` for the counts and the recently seen; their ingest over
 *   the last hour, computed on read (nothing is maintained per batch): readings through a
 *   scan of `feeds` for the devices' feeds and the `feed_values` primary key, rejects
 *   through `ingest_rejects_message` (the newest 2,000), told apart by their topic.
 * - alerts: the open ones only, through the partial index `feed_alerts_open`.
 */
import type postgres from "postgres";
import type { TopicRouter } from "../core/topics.ts";

/** Rows shown, at most. */
export const STATUS_LIMITS = { feeds: 25, points: 40, rejects: 20, devices: 20, alerts: 20 };
const STATEMENT_TIMEOUT_MS = 2000;
/**
 * A device whose status is `online` but that has not been heard from (no status, no
 * reading) for this long is shown as stale: its connection may be gone without a last
 * will (a simulated or unregistered "ghost" device, a broker that lost it). Fixed, 5 min.
 */
export const STALE_AFTER_S = 300;

/** A feed row of the status page. */
export interface FeedStatus {
  id: number;
  user_id: string;
  device: string | null;
  key: string;
  is_active: boolean;
  last_value: string | null;
  last_value_at: string | null;
  /** Recent numeric values, oldest first: [epoch ms, value]. */
  points: [number, number][];
}

/** Runs `fn` in a read-only transaction with a statement timeout. */
function bounded<T>(sql: postgres.Sql, fn: (tx: postgres.TransactionSql) => Promise<T>) {
  return sql.begin("read only", async (tx) => {
    // `set local` lasts until the end of this transaction only.
    await tx`select set_config('statement_timeout', ${String(STATEMENT_TIMEOUT_MS)}, true)`;
    return await fn(tx);
  }) as Promise<T>;
}

/** The feeds written most recently, with their recent values. */
export function queryFeeds(sql: postgres.Sql): Promise<FeedStatus[]> {
  return bounded(sql, async (tx) => {
    const feeds = await tx<Omit<FeedStatus, "points">[]>`
      select f.id::float8 as id, f.user_id::text as user_id, d.code as device, f.key,
             f.is_active, l.value as last_value, l.at as last_value_at
      from (select * from (
              select distinct on (feed_id) feed_id, value, at
              from ((select feed_id, value, at from feed_last_values
                     order by at desc nulls last limit ${STATUS_LIMITS.feeds})
                    union all
                    select feed_id, value, at from feed_last_values_pending) newest
              order by feed_id, at desc nulls last) per_feed
            order by at desc nulls last
            limit ${STATUS_LIMITS.feeds}) l
      join feeds f on f.id = l.feed_id
      left join devices d on d.id = f.device_id
      order by l.at desc nulls last`;
    if (feeds.length === 0) return [];
    const ids = feeds.map((f) => f.id);
    const values = await tx<{ feed_id: number; ms: number; value: number }[]>`
      select x.id::float8 as feed_id, extract(epoch from v.created_at) * 1000 as ms, v.value
      from unnest(${ids}::int8[]) as x(id)
      cross join lateral (
        select created_at, value from feed_values
        where feed_id = x.id and value is not null
        order by created_at desc
        limit ${STATUS_LIMITS.points}
      ) v`;
    const points = new Map<number, [number, number][]>();
    for (const v of values) {
      let list = points.get(Number(v.feed_id));
      if (!list) points.set(Number(v.feed_id), list = []);
      list.push([Number(v.ms), Number(v.value)]);
    }
    return feeds.map((f) => ({
      ...f,
      id: Number(f.id),
      last_value_at: toIso(f.last_value_at),
      points: (points.get(Number(f.id)) ?? []).reverse(),
    }));
  });
}

/** The latest rejects. */
export function queryRejects(sql: postgres.Sql) {
  return bounded(sql, async (tx) => {
    const rows = await tx<
      {
        topic: string;
        reason: string;
        detail: string | null;
        received_at: Date;
        size: number;
        payload: string;
      }[]
    >`
      select topic, reason, detail, received_at, payload_size as size,
             encode(substring(payload from 1 for 200), 'escape') as payload
      from ingest_rejects
      order by received_at desc
      limit ${STATUS_LIMITS.rejects}`;
    return rows.map((r) => ({ ...r, received_at: toIso(r.received_at) }));
  });
}

/**
 * The open alerts (docs/operations.md, "Alerts"), newest first, and how many are open by
 * kind (the partial index `feed_alerts_open` holds exactly the open ones).
 */
export function queryAlerts(sql: postgres.Sql) {
  return bounded(sql, async (tx) => {
    const counts = await tx<{ kind: string; n: number }[]>`
      select kind, count(*)::int as n from feed_alerts where closed_at is null group by kind`;
    const open = await tx<
      {
        id: number;
        kind: string;
        user_id: string;
        device: string | null;
        key: string;
        since: Date;
        opened_at: Date;
        threshold: number | null;
        value: number | null;
        peak: number | null;
      }[]
    >`
      select a.id::float8 as id, a.kind, f.user_id::text as user_id, d.code as device, f.key,
             a.since, a.opened_at, a.threshold, a.opened_value as value, a.peak_value as peak
      from feed_alerts a
      join feeds f on f.id = a.feed_id
      left join devices d on d.id = f.device_id
      where a.closed_at is null
      order by a.opened_at desc
      limit ${STATUS_LIMITS.alerts}`;
    return {
      counts: Object.fromEntries(counts.map((c) => [c.kind, c.n])),
      open: open.map((a) => ({
        ...a,
        since: toIso(a.since),
        opened_at: toIso(a.opened_at),
      })),
    };
  });
}

/**
 * Devices by status, how many of the online ones are stale (silent for longer than
 * {@linkcode STALE_AFTER_S}), and the most recently seen, each marked stale or not.
 */
export function queryDevices(sql: postgres.Sql, router: TopicRouter | null = null) {
  return bounded(sql, async (tx) => {
    const counts = await tx<{ status: string; n: number; stale: number }[]>`
      select status, count(*)::int as n,
             (count(*) filter (
               where status = 'online'
                 and last_seen_at < now() - ${STALE_AFTER_S} * interval '1 second'))::int as stale
      from devices group by status`;
    const recent = await tx<
      {
        id: string;
        user_id: string;
        code: string;
        status: string;
        last_seen_at: Date | null;
        stale: boolean;
      }[]
    >`
      select id::text, user_id::text as user_id, code, status, last_seen_at, status_changed_at,
             coalesce(status = 'online'
               and last_seen_at < now() - ${STALE_AFTER_S} * interval '1 second', false) as stale
      from devices
      order by last_seen_at desc nulls last
      limit ${STATUS_LIMITS.devices}`;
    const ingest = await deviceIngest(tx, recent, router);
    return {
      counts: Object.fromEntries(counts.map((c) => [c.status, c.n])),
      /** Online devices silent for longer than `stale_after_s` (included in `counts.online`). */
      stale: counts.reduce((n, c) => n + c.stale, 0),
      stale_after_s: STALE_AFTER_S,
      recent: recent.map((d, i) => ({ ...d, last_seen_at: toIso(d.last_seen_at), ...ingest[i] })),
    };
  });
}

/** A recent device's ingest over the last hour (the status page's device table). */
export interface DeviceIngest {
  stored_1h: number;
  rejected_1h: number;
  last_reject: { at: string | null; reason: string } | null;
}

const RECENT_REJECTS = 2000;

async function deviceIngest(
  tx: postgres.TransactionSql,
  devices: { id: string; user_id: string; code: string }[],
  router: TopicRouter | null,
): Promise<DeviceIngest[]> {
  if (devices.length === 0) return [];
  const stored = await tx<{ id: string; n: number }[]>`
    select f.device_id::text as id, count(*)::int as n
    from feeds f join feed_values v on v.feed_id = f.id and v.created_at > now() - interval '1 hour'
    where f.device_id = any(${devices.map((d) => d.id)}::int8[])
    group by f.device_id`;
  const storedBy = new Map(stored.map((r) => [r.id, r.n]));
  const byDevice = new Map<string, { n: number; last: DeviceIngest["last_reject"] }>();
  if (router) {
    const rejects = await tx<{ topic: string; reason: string; received_at: Date }[]>`
      select topic, reason, received_at from ingest_rejects
      where received_at > now() - interval '1 hour'
      order by received_at desc limit ${RECENT_REJECTS}`;
    for (const r of rejects) {
      const m = router.match(r.topic);
      if (!m) continue;
      const key = `${m.userId}/${m.deviceCode}`;
      const d = byDevice.get(key);
      if (d) d.n++;
      else byDevice.set(key, { n: 1, last: { at: toIso(r.received_at), reason: r.reason } });
    }
  }
  return devices.map((d) => {
    const r = byDevice.get(`${d.user_id}/${d.code}`);
    return {
      stored_1h: storedBy.get(d.id) ?? 0,
      rejected_1h: r?.n ?? 0,
      last_reject: r?.last ?? null,
    };
  });
}

function toIso(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  return value instanceof Date ? value.toISOString() : String(value);
}

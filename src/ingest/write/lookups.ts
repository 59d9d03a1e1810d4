/**
 * The lookups of a batch: the feeds and the registered devices its messages name, from
 * the caches (src/ingest/feed_cache.ts, src/ingest/device_cache.ts) and, for what they do
 * not know, one query each. Only what was found is cached (an unknown feed or device may
 * be registered any moment). The answers are copied out of the caches, so an entry that
 * expires while the batch is planned cannot change its plan.
 */
import type { Transaction } from "../../db/transaction.ts";
import { type DeviceCache, deviceKeyOf } from "../device_cache.ts";
import { type FeedAlertRules, type FeedCache, type FeedInfo, feedKeyOf } from "../feed_cache.ts";
import type { DeviceRef, FeedRef, PlanRules } from "./plan.ts";

/** The feeds of `feeds` that exist, by feed key. */
export async function lookupFeeds(
  tx: Transaction,
  feeds: ReadonlyMap<string, FeedRef>,
  cache: FeedCache | undefined,
): Promise<Map<string, FeedInfo>> {
  const found = new Map<string, FeedInfo>();
  const users: string[] = [];
  const keys: string[] = [];
  const now = Date.now();
  for (const [key, ref] of feeds) {
    const cached = cache?.get(key, now);
    if (cached) {
      found.set(key, cached);
    } else {
      users.push(ref.userId);
      keys.push(ref.feedKey);
    }
  }
  if (keys.length === 0) return found;
  // Noted before the query: an invalidation that arrives meanwhile keeps its answer out.
  const version = cache?.version;
  const rows = await tx<
    {
      id: string;
      user_id: string;
      key: string;
      is_active: boolean;
      threshold_min: number | null;
      threshold_max: number | null;
      alert_mode: boolean;
      hysteresis: number | null;
      min_duration_us: number | null;
      watches_silence: boolean;
    }[]
  >`
    select f.id, f.user_id, f.key, f.is_active, f.threshold_min, f.threshold_max,
           f.threshold_mode = 'alert' as alert_mode, f.threshold_hysteresis as hysteresis,
           (extract(epoch from f.threshold_min_duration) * 1e6)::float8 as min_duration_us,
           f.max_silence is not null as watches_silence
    from unnest(${users}::uuid[], ${keys}::text[]) as k(user_id, key)
    join feeds f on f.user_id = k.user_id and f.key = k.key`;
  for (const row of rows) {
    const feed: FeedInfo = {
      id: Number(row.id),
      isActive: row.is_active,
      thresholdMin: row.threshold_min,
      thresholdMax: row.threshold_max,
    };
    const alerts = alertRulesOf(row);
    if (alerts) feed.alerts = alerts;
    const key = feedKeyOf(row.user_id, row.key);
    found.set(key, feed);
    cache?.set(key, feed, now, version);
  }
  return found;
}

/** A feed's alert settings, or undefined for a feed without any (the usual case). */
function alertRulesOf(
  row: {
    alert_mode: boolean;
    hysteresis: number | null;
    min_duration_us: number | null;
    watches_silence: boolean;
  },
): FeedAlertRules | undefined {
  if (!row.alert_mode && !row.watches_silence) return undefined;
  return {
    alertMode: row.alert_mode,
    hysteresis: row.hysteresis ?? 0,
    minDurationUs: row.min_duration_us ?? 0,
    watchesSilence: row.watches_silence,
  };
}

/**
 * The ids of the registered devices among `devices`, by device key: those of status
 * messages always, those of readings when the rules require a registered device.
 */
export async function lookupDevices(
  tx: Transaction,
  devices: ReadonlyMap<string, DeviceRef>,
  cache: DeviceCache | undefined,
  rules: PlanRules,
): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  const users: string[] = [];
  const codes: string[] = [];
  const now = Date.now();
  for (const [key, ref] of devices) {
    if (!ref.hasStatus && !rules.requireDevice) continue;
    const cached = cache?.get(key, now);
    if (cached !== undefined) {
      found.set(key, cached);
    } else {
      users.push(ref.userId);
      codes.push(ref.deviceCode);
    }
  }
  if (users.length === 0) return found;
  const version = cache?.version;
  const rows = await tx<{ id: string; user_id: string; code: string }[]>`
    select d.id, d.user_id, d.code
    from unnest(${users}::uuid[], ${codes}::text[]) as k(user_id, code)
    join devices d on d.user_id = k.user_id and d.code = k.code`;
  for (const row of rows) {
    const key = deviceKeyOf(row.user_id, row.code);
    const id = Number(row.id);
    found.set(key, id);
    cache?.set(key, id, now, version);
  }
  return found;
}

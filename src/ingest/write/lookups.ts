/**
 * The lookups of a batch: the tenant aliases, feeds and registered devices its messages
 * name, from the caches (src/ingest/tenant_cache.ts, src/ingest/feed_cache.ts,
 * src/ingest/device_cache.ts) and, for what they do not know, one query each. Only what was found is cached (an unknown feed or device may
 * be registered any moment). The answers are copied out of the caches, so an entry that
 * expires while the batch is planned cannot change its plan.
 */
import type { Transaction } from "../../db/transaction.ts";
import { type DeviceCache, deviceKeyOf } from "../device_cache.ts";
import { type FeedAlertRules, type FeedCache, type FeedInfo, feedKeyOf } from "../feed_cache.ts";
import type { TenantCache } from "../tenant_cache.ts";
import type { DeviceRef, FeedRef, PlanRules, Tenants } from "./plan.ts";

const NO_TENANTS: Tenants = new Map();

/**
 * The users of the tenant aliases `aliases` (src/ingest/write/plan.ts `aliasesOf`), by
 * alias; an alias `tenant_aliases` does not have is left out (its messages are
 * `unknown_tenant`). In dev mode (`autoRegister`) an unknown alias is created first, with
 * a new user of its own.
 */
export async function lookupTenants(
  tx: Transaction,
  aliases: ReadonlySet<string>,
  cache: TenantCache | undefined,
  autoRegister: boolean,
): Promise<Tenants> {
  if (aliases.size === 0) return NO_TENANTS;
  const found = new Map<string, string>();
  const missing: string[] = [];
  const now = Date.now();
  for (const alias of aliases) {
    const cached = cache?.get(alias, now);
    if (cached !== undefined) found.set(alias, cached);
    else missing.push(alias);
  }
  if (missing.length === 0) return found;
  if (autoRegister) await registerAliases(tx, missing);
  const version = cache?.version;
  const rows = await tx<{ alias: string; user_id: string }[]>`
    select alias, user_id from tenant_aliases where alias = any(${missing}::text[])`;
  for (const row of rows) {
    found.set(row.alias, row.user_id);
    cache?.set(row.alias, row.user_id, now, version);
  }
  return found;
}

/**
 * Dev mode: each alias not yet in `tenant_aliases` gets a new user. An alias another
 * instance registers meanwhile keeps that one's user, and the user made here for it is
 * removed again.
 */
async function registerAliases(tx: Transaction, aliases: string[]): Promise<void> {
  const users = aliases.map(() => crypto.randomUUID());
  await tx`insert into users (id) select * from unnest(${users}::uuid[])`;
  const made = await tx<{ user_id: string }[]>`
    insert into tenant_aliases (alias, user_id)
    select * from unnest(${aliases}::text[], ${users}::uuid[])
    on conflict do nothing
    returning user_id`;
  if (made.length === users.length) return;
  const kept = new Set(made.map((r) => r.user_id));
  const unused = users.filter((u) => !kept.has(u));
  await tx`delete from users where id = any(${unused}::uuid[])`;
}

/** A row of the feed lookup. */
interface FeedRow {
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
}

/**
 * The lookup of the feeds named by `users[i]`, `keys[i]`. It reads only columns the unique
 * key (user_id, key) carries (sql/016), so PostgreSQL answers it from that index alone,
 * without a page of `feeds` per feed: the cost of a cold batch over a large fleet
 * (docs/performance.md, "Fleet scale (issue 26)"). A column read here must be in the key's
 * INCLUDE list too (test/lookups_plan_test.ts checks the plan).
 */
export function feedLookup(tx: Transaction, users: string[], keys: string[]) {
  return tx<FeedRow[]>`
    select f.id, f.user_id, f.key, f.is_active, f.threshold_min, f.threshold_max,
           f.threshold_mode = 'alert' as alert_mode, f.threshold_hysteresis as hysteresis,
           (extract(epoch from f.threshold_min_duration) * 1e6)::float8 as min_duration_us,
           f.max_silence is not null as watches_silence
    from unnest(${users}::uuid[], ${keys}::text[]) as k(user_id, key)
    join feeds f on f.user_id = k.user_id and f.key = k.key`;
}

/** The feeds of `feeds` that exist, by feed key. */
export async function lookupFeeds(
  tx: Transaction,
  feeds: ReadonlyMap<string, FeedRef>,
  cache: FeedCache | undefined,
): Promise<Map<string, FeedInfo>> {
  const found = new Map<string, FeedInfo>();
  const missing: FeedRef[] = [];
  const now = Date.now();
  for (const [key, ref] of feeds) {
    const cached = cache?.get(key, now);
    if (cached) found.set(key, cached);
    else missing.push(ref);
  }
  if (missing.length === 0) return found;
  // By user, as the unique key (user_id, key) is ordered (a uuid sorts as its lower-case
  // text): the probes walk the index from left to right, a user's feeds one after another.
  missing.sort((a, b) => a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0);
  const users = missing.map((ref) => ref.userId);
  const keys = missing.map((ref) => ref.feedKey);
  // Noted before the query: an invalidation that arrives meanwhile keeps its answer out.
  const version = cache?.version;
  const rows = await feedLookup(tx, users, keys);
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

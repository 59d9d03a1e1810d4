/**
 * The writer of alerts (docs/operations.md, "Alerts"): `feed_alerts` and each alerting
 * feed's rule state in `feeds`, in the batch's own transaction, so an alert exists iff
 * the reading that opened it is stored. Only batches with a reading of a feed that has
 * alert rules (threshold mode `alert`, or a `max_silence`) pay anything here; the feed
 * cache says which (src/ingest/feed_cache.ts).
 *
 * Before the readings are written, the state of those feeds is locked (their `feeds`
 * rows, in id order) and read: a batch of another serve instance writing the same feed
 * waits, and then reads what that one committed. After the readings are written, the
 * rules (src/ingest/write/alert_plan.ts, pure) run over the rows that were stored, and
 * their outcome is written: alerts closed or changed, alerts opened, the feeds' state.
 * The events of the alerts are returned for the batch's result; serve publishes them
 * after the commit (src/ops/alerts.ts), and the table's trigger NOTIFYs (sql/010).
 */
import type { DecodedMessage } from "../../core/message.ts";
import { timestampOfUs } from "../../db/timestamps.ts";
import type { Transaction } from "../../db/transaction.ts";
import type { FeedInfo } from "../feed_cache.ts";
import { floatArrayLiteral, intArrayLiteral, textArrayLiteral } from "../pg_array.ts";
import {
  type AlertKind,
  type AlertPlan,
  type AlertState,
  type OpenAlert,
  planAlerts,
  type PlannedAlert,
  type ThresholdKind,
} from "./alert_plan.ts";
import type { ValueRow } from "./rows.ts";

// Integer columns that may hold NULL (µs times) go in as float literals: exact below 2^53,
// and `NULL` where there is none (src/ingest/pg_array.ts).

/** An alert opened or closed, as serve publishes it on `{user_id}/alerts`. */
export interface AlertEvent {
  event: "opened" | "closed";
  /** `feed_alerts.id`. */
  id: number;
  userId: string;
  feedId: number;
  feedKey: string;
  kind: AlertKind;
  /** When the condition began (device time, µs). */
  sinceUs: number;
  /** The reading that opened or closed it (device time, µs); a stale alert opens at the check. */
  atUs: number;
  /** That reading's value (null: a text reading, or a stale alert opening). */
  value: number | null;
  /** The threshold crossed; null for stale. */
  threshold: number | null;
  /** The farthest value of the excursion; null for stale. */
  peak: number | null;
  /** A stale alert's `max_silence`, seconds. */
  maxSilenceS?: number;
}

/** The alerting feeds of a batch, their state locked until its commit. */
export interface LockedAlertStates {
  states: Map<number, AlertState>;
  /** By feed id. */
  feeds: Map<number, FeedInfo>;
}

/**
 * Locks and reads the alert state of the batch's feeds that have alert rules; null (and
 * no statement) when none has.
 */
export async function lockAlertStates(
  tx: Transaction,
  found: ReadonlyMap<string, FeedInfo>,
): Promise<LockedAlertStates | null> {
  let feeds: Map<number, FeedInfo> | null = null;
  for (const feed of found.values()) {
    if (feed.alerts) (feeds ??= new Map()).set(feed.id, feed);
  }
  if (!feeds) return null;
  const ids = intArrayLiteral([...feeds.keys()]);
  // Two statements: the second one's snapshot is taken once the locks are held, so it sees
  // what a batch that held them before committed (one statement would re-read only the
  // locked rows, not the alerts beside them).
  await tx`select id from feeds where id = any(${ids}::int8[]) order by id for update`;
  const rows = await tx<
    {
      id: number;
      seen_us: number | null;
      pending_kind: ThresholdKind | null;
      pending_since_us: number | null;
      pending_peak: number | null;
      alert_id: number | null;
      kind: AlertKind | null;
      since_us: number | null;
      opened_us: number | null;
      threshold: number | null;
      peak: number | null;
    }[]
  >`
    select f.id::float8 as id, ${usOf(tx, "f.alert_seen_at")} as seen_us,
           f.alert_pending_kind as pending_kind,
           ${usOf(tx, "f.alert_pending_since")} as pending_since_us,
           f.alert_pending_peak as pending_peak, a.id::float8 as alert_id, a.kind,
           ${usOf(tx, "a.since")} as since_us, ${usOf(tx, "a.opened_at")} as opened_us,
           a.threshold, a.peak_value as peak
    from feeds f
    left join feed_alerts a on a.feed_id = f.id and a.closed_at is null
    where f.id = any(${ids}::int8[])`;
  const states = new Map<number, AlertState>();
  for (const r of rows) {
    let state = states.get(r.id);
    if (!state) {
      const pending = r.pending_kind && r.pending_since_us !== null && r.pending_peak !== null
        ? { kind: r.pending_kind, sinceUs: r.pending_since_us, peak: r.pending_peak }
        : null;
      states.set(r.id, state = { feedId: r.id, seenUs: r.seen_us, pending, open: [] });
    }
    if (r.alert_id !== null) {
      const open: OpenAlert = {
        id: r.alert_id,
        kind: r.kind!,
        sinceUs: r.since_us!,
        openedUs: r.opened_us!,
        threshold: r.threshold,
        peak: r.peak,
      };
      state.open.push(open);
    }
  }
  return { states, feeds };
}

/**
 * Runs the alert rules over the stored value rows and writes their outcome; returns the
 * events, in device time per feed.
 */
export async function writeAlerts(
  tx: Transaction,
  batch: readonly DecodedMessage[],
  locked: LockedAlertStates,
  rows: readonly ValueRow[],
  notStored: ReadonlySet<ValueRow> | null,
): Promise<AlertEvent[]> {
  const plan = planAlerts(locked.states, locked.feeds, rows, notStored);
  // Closing first: a batch may close an alert and open the next one of the same kind, and
  // only one may be open at a time (feed_alerts_open).
  if (plan.changed.length > 0) await updateAlerts(tx, plan.changed);
  const ids = plan.opened.length > 0 ? await insertAlerts(tx, plan.opened) : new Map();
  if (plan.states.length > 0) await updateStates(tx, plan);
  return eventsOf(batch, plan, ids);
}

async function updateAlerts(tx: Transaction, alerts: PlannedAlert[]): Promise<void> {
  await tx`
    update feed_alerts a
    set peak_value = x.p,
        closed_at = case when x.c is null then a.closed_at else ${timestampOfUs(tx, "x.c")} end,
        closed_value = coalesce(x.cv, a.closed_value), updated_at = now()
    from unnest(${intArrayLiteral(alerts.map((a) => a.id!))}::int8[],
                ${floatArrayLiteral(alerts.map((a) => a.peak))}::float8[],
                ${floatArrayLiteral(alerts.map((a) => a.closedUs))}::int8[],
                ${floatArrayLiteral(alerts.map((a) => a.closedValue))}::float8[])
      as x(id, p, c, cv)
    where a.id = x.id`;
}

/** Inserts the alerts the batch opened; their ids by `keyOf`. */
async function insertAlerts(tx: Transaction, alerts: PlannedAlert[]): Promise<Map<string, number>> {
  const col = <T>(f: (a: PlannedAlert) => T) => alerts.map(f);
  const inserted = await tx<{ id: number; feed_id: number; kind: AlertKind; since_us: number }[]>`
    insert into feed_alerts (feed_id, kind, since, opened_at, closed_at, threshold,
                             opened_value, peak_value, closed_value)
    select f, k, ${timestampOfUs(tx, "s")}, ${timestampOfUs(tx, "o")},
           case when c is null then null else ${timestampOfUs(tx, "c")} end, t, ov, p, cv
    from unnest(${intArrayLiteral(col((a) => a.feedId))}::int8[],
                ${textArrayLiteral(col((a) => a.kind))}::text[],
                ${intArrayLiteral(col((a) => a.sinceUs))}::int8[],
                ${intArrayLiteral(col((a) => a.openedUs))}::int8[],
                ${floatArrayLiteral(col((a) => a.closedUs))}::int8[],
                ${floatArrayLiteral(col((a) => a.threshold))}::float8[],
                ${floatArrayLiteral(col((a) => a.openedValue))}::float8[],
                ${floatArrayLiteral(col((a) => a.peak))}::float8[],
                ${floatArrayLiteral(col((a) => a.closedValue))}::float8[])
      as x(f, k, s, o, c, t, ov, p, cv)
    on conflict do nothing
    returning id::float8 as id, feed_id::float8 as feed_id, kind,
              ${usOf(tx, "since")} as since_us`;
  return new Map(inserted.map((r) => [keyOf(r.feed_id, r.kind, r.since_us), r.id]));
}

async function updateStates(tx: Transaction, plan: AlertPlan): Promise<void> {
  const s = plan.states;
  await tx`
    update feeds f
    set alert_seen_at = ${timestampOfUs(tx, "x.seen")}, alert_pending_kind = x.k,
        alert_pending_since = case when x.since is null then null
                                   else ${timestampOfUs(tx, "x.since")} end,
        alert_pending_peak = x.peak
    from unnest(${intArrayLiteral(s.map((x) => x.feedId))}::int8[],
                ${floatArrayLiteral(s.map((x) => x.seenUs))}::int8[],
                ${textArrayLiteral(s.map((x) => x.pending?.kind ?? null))}::text[],
                ${floatArrayLiteral(s.map((x) => x.pending?.sinceUs ?? null))}::int8[],
                ${floatArrayLiteral(s.map((x) => x.pending?.peak ?? null))}::float8[])
      as x(id, seen, k, since, peak)
    where f.id = x.id`;
}

/** The opened and closed events of the plan; an alert a conflict kept out has none. */
function eventsOf(
  batch: readonly DecodedMessage[],
  plan: AlertPlan,
  ids: ReadonlyMap<string, number>,
): AlertEvent[] {
  const events: AlertEvent[] = [];
  const add = (a: PlannedAlert, id: number, event: "opened" | "closed", r: ValueRow) => {
    const decoded = batch[r.message].decoded;
    if (decoded.kind !== "readings") return;
    events.push({
      event,
      id,
      userId: decoded.userId,
      feedId: a.feedId,
      feedKey: r.feedKey,
      kind: a.kind,
      sinceUs: a.sinceUs,
      atUs: r.createdUs,
      value: r.value,
      threshold: a.threshold,
      peak: a.peak,
    });
  };
  for (const a of [...plan.changed, ...plan.opened]) {
    const id = a.id ?? ids.get(keyOf(a.feedId, a.kind, a.sinceUs));
    if (id === undefined) continue;
    if (a.openedBy) add(a, id, "opened", a.openedBy);
    if (a.closedBy) add(a, id, "closed", a.closedBy);
  }
  return events.sort((x, y) => x.atUs - y.atUs);
}

function keyOf(feedId: number, kind: AlertKind, sinceUs: number): string {
  return `${feedId}/${kind}/${sinceUs}`;
}

/** A timestamptz column as µs since the epoch, exact in a float8 (< 2^53). */
function usOf(tx: Transaction, column: string) {
  return tx.unsafe(`(extract(epoch from ${column}) * 1000000)::float8`);
}

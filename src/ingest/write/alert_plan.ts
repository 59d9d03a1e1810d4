/**
 * The alert rules of a batch (docs/operations.md, "Alerts"), part of the pure plan: given
 * each alerting feed's state as the batch found it (locked, src/ingest/write/alerts.ts) and
 * the readings the batch stored, which alerts open, change and close, and each feed's
 * state after it. No SQL and no clock, so every rule is unit-tested without a database
 * (alert_plan_test.ts); the plan of the rest of the batch is src/ingest/write/plan.ts.
 *
 * The rules follow device time, the readings' `created_at`:
 * - a threshold alert (`above`, `below`) opens at the reading that has kept the value out
 *   of range for `threshold_min_duration` (at once without one) and closes at the first
 *   reading back inside the range by `threshold_hysteresis`; a value in that band changes
 *   nothing. Readings not newer than the newest one the rules have seen (late data, a
 *   redelivery, a replay) change nothing, so a late reading never reopens an alert a newer
 *   reading closed, and replaying a capture twice opens no second alert;
 * - a `stale` alert (opened by the silence check, src/ingest/silence_check.ts) closes at
 *   the first reading newer than the last one before the silence.
 * Only readings that are stored count: an alert exists iff the reading that opened it does.
 */
import type { FeedInfo } from "../feed_cache.ts";
import type { ValueRow } from "./rows.ts";

/** The kinds of threshold alert. */
export type ThresholdKind = "above" | "below";
/** Every kind of alert (`feed_alerts.kind`). */
export type AlertKind = ThresholdKind | "stale";
export const ALERT_KINDS: readonly AlertKind[] = ["above", "below", "stale"];

/** A run of readings out of range that has not lasted `threshold_min_duration` yet. */
export interface Excursion {
  kind: ThresholdKind;
  /** Its first reading's time, µs. */
  sinceUs: number;
  /** The farthest value so far. */
  peak: number;
}

/** An alert open in the database when the batch began. */
export interface OpenAlert {
  id: number;
  kind: AlertKind;
  sinceUs: number;
  openedUs: number;
  threshold: number | null;
  peak: number | null;
}

/** A feed's alert state as the batch found it. */
export interface AlertState {
  feedId: number;
  /** The newest reading the threshold rules have seen, µs; null: none yet. */
  seenUs: number | null;
  pending: Excursion | null;
  /** At most one per kind (a unique index says so). */
  open: OpenAlert[];
}

/** An alert as the batch leaves it: one it opened, or one open before that it changed. */
export interface PlannedAlert {
  /** The database id of an alert open before the batch; null for one the batch opens. */
  id: number | null;
  feedId: number;
  kind: AlertKind;
  sinceUs: number;
  openedUs: number;
  threshold: number | null;
  openedValue: number | null;
  peak: number | null;
  closedUs: number | null;
  closedValue: number | null;
  /** The stored reading that opened it (null: opened before the batch). */
  openedBy: ValueRow | null;
  /** The stored reading that closed it (null: still open). */
  closedBy: ValueRow | null;
}

/** A feed's alert state after the batch, for `feeds.alert_*`. */
export interface StateAfter {
  feedId: number;
  seenUs: number | null;
  pending: Excursion | null;
}

/** What the alert rules make of a batch. */
export interface AlertPlan {
  /** Alerts the batch opened (some of them closed again by a later reading of it). */
  opened: PlannedAlert[];
  /** Alerts open before the batch whose peak moved or that it closed. */
  changed: PlannedAlert[];
  /** The state of each feed whose threshold rules saw a reading. */
  states: StateAfter[];
}

/**
 * The alert plan of the stored readings `rows` (those in `notStored` are not in the
 * database and count for nothing), for the feeds whose state is in `states`; `feeds` by
 * feed id gives their thresholds and settings.
 */
export function planAlerts(
  states: ReadonlyMap<number, AlertState>,
  feeds: ReadonlyMap<number, FeedInfo>,
  rows: readonly ValueRow[],
  notStored: ReadonlySet<ValueRow> | null,
): AlertPlan {
  const byFeed = new Map<number, ValueRow[]>();
  for (const r of rows) {
    if (!states.has(r.feedId) || notStored?.has(r)) continue;
    const list = byFeed.get(r.feedId);
    if (list) list.push(r);
    else byFeed.set(r.feedId, [r]);
  }
  const plan: AlertPlan = { opened: [], changed: [], states: [] };
  for (const [feedId, list] of byFeed) {
    const feed = feeds.get(feedId);
    if (!feed?.alerts) continue;
    list.sort((a, b) => a.createdUs - b.createdUs);
    const state = states.get(feedId)!;
    const existing = state.open.map((a) => planned(feedId, a));
    const stale = existing.find((a) => a.kind === "stale");
    // Any reading newer than the last one before the silence ends it.
    const waking = stale && list.find((r) => r.createdUs > stale.sinceUs);
    if (stale && waking) close(stale, waking);
    if (feed.alerts.alertMode) {
      const open = existing.find((a) => a.kind !== "stale") ?? null;
      const after = applyThresholds(feed, state, open, list, plan.opened);
      if (after) plan.states.push(after);
    }
    for (const a of existing) if (changedFrom(a, state)) plan.changed.push(a);
  }
  return plan;
}

/** The threshold rules over one feed's readings, in device time; null: none was new. */
function applyThresholds(
  feed: FeedInfo,
  state: AlertState,
  alreadyOpen: PlannedAlert | null,
  rows: readonly ValueRow[],
  opened: PlannedAlert[],
): StateAfter | null {
  const { hysteresis, minDurationUs } = feed.alerts!;
  let seenUs = state.seenUs;
  let pending = state.pending ? { ...state.pending } : null;
  let open = alreadyOpen;
  let moved = false;
  for (const r of rows) {
    if (seenUs !== null && r.createdUs <= seenUs) continue; // late, redelivered or replayed
    seenUs = r.createdUs;
    moved = true;
    const v = r.value;
    if (v === null) continue; // a text reading has no side of a threshold
    const side = sideOf(feed, v);
    if (open) {
      if (side === open.kind) {
        open.peak = farther(side, open.peak, v);
        continue;
      }
      // Out on the other side closes it whatever the hysteresis; inside, only past it.
      if (side === null && !pastHysteresis(feed, open.kind as ThresholdKind, v, hysteresis)) {
        continue;
      }
      close(open, r);
      open = null;
    }
    if (side === null) {
      pending = null;
      continue;
    }
    if (pending && pending.kind === side) pending.peak = farther(side, pending.peak, v)!;
    else pending = { kind: side, sinceUs: r.createdUs, peak: v };
    if (r.createdUs - pending.sinceUs < minDurationUs) continue;
    open = {
      id: null,
      feedId: feed.id,
      kind: side,
      sinceUs: pending.sinceUs,
      openedUs: r.createdUs,
      threshold: side === "above" ? feed.thresholdMax : feed.thresholdMin,
      openedValue: v,
      peak: pending.peak,
      closedUs: null,
      closedValue: null,
      openedBy: r,
      closedBy: null,
    };
    opened.push(open);
    pending = null;
  }
  return moved ? { feedId: feed.id, seenUs, pending } : null;
}

/** Which side of the feed's range `v` is on; null: inside it. */
export function sideOf(feed: FeedInfo, v: number): ThresholdKind | null {
  if (feed.thresholdMax !== null && v > feed.thresholdMax) return "above";
  if (feed.thresholdMin !== null && v < feed.thresholdMin) return "below";
  return null;
}

/** Back inside the range by the hysteresis band (or the threshold is gone). */
function pastHysteresis(feed: FeedInfo, kind: ThresholdKind, v: number, band: number): boolean {
  return kind === "above"
    ? feed.thresholdMax === null || v <= feed.thresholdMax - band
    : feed.thresholdMin === null || v >= feed.thresholdMin + band;
}

function farther(kind: ThresholdKind, peak: number | null, v: number): number {
  if (peak === null) return v;
  return kind === "above" ? Math.max(peak, v) : Math.min(peak, v);
}

function close(alert: PlannedAlert, r: ValueRow): void {
  alert.closedUs = r.createdUs;
  alert.closedValue = r.value;
  alert.closedBy = r;
}

function planned(feedId: number, a: OpenAlert): PlannedAlert {
  return {
    ...a,
    feedId,
    openedValue: null,
    closedUs: null,
    closedValue: null,
    openedBy: null,
    closedBy: null,
  };
}

function changedFrom(a: PlannedAlert, state: AlertState): boolean {
  const before = state.open.find((o) => o.id === a.id)!;
  return a.closedBy !== null || a.peak !== before.peak;
}

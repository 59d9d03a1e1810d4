/**
 * The alert rules without a database (src/ingest/write/alert_plan.ts): thresholds with
 * hysteresis and minimum duration in device time, late and replayed readings, stale
 * alerts, and only stored readings counting. A small in-memory table (`Table`) carries
 * the state from one batch to the next as the writer does in PostgreSQL.
 */
import assert from "node:assert/strict";
import type { FeedAlertRules, FeedInfo } from "../feed_cache.ts";
import {
  type AlertPlan,
  type AlertState,
  type OpenAlert,
  planAlerts,
  type PlannedAlert,
  sideOf,
} from "./alert_plan.ts";
import type { ValueRow } from "./rows.ts";

const T0 = 1_700_000_000_000_000;
const S = 1_000_000; // one second in µs

function feed(rules: Partial<FeedAlertRules> = {}, more: Partial<FeedInfo> = {}): FeedInfo {
  return {
    id: 1,
    isActive: true,
    thresholdMin: 0,
    thresholdMax: 50,
    alerts: { alertMode: true, hysteresis: 0, minDurationUs: 0, watchesSilence: false, ...rules },
    ...more,
  };
}

let nextMessage = 0;
/** A stored reading of feed 1 at T0 + `s` seconds. */
function row(s: number, value: number | null, feedId = 1): ValueRow {
  return {
    feedId,
    feedKey: "temp",
    value,
    text: value === null ? "ON" : null,
    createdUs: T0 + s * S,
    receivedUs: T0 + s * S,
    message: nextMessage++,
    watched: false,
  };
}

/** What the database holds of one feed's alerts, as the writer leaves it. */
class Table {
  state: AlertState = { feedId: 1, seenUs: null, pending: null, open: [] };
  alerts: PlannedAlert[] = [];
  #ids = 0;

  constructor(readonly info: FeedInfo) {}

  /** Plans a batch of `rows` and applies it; returns the plan. */
  batch(rows: ValueRow[], notStored: ReadonlySet<ValueRow> | null = null): AlertPlan {
    const plan = planAlerts(
      new Map([[1, structuredClone(this.state)]]),
      new Map([[1, this.info]]),
      rows,
      notStored,
    );
    for (const c of plan.changed) {
      const stored = this.alerts.find((a) => a.id === c.id)!;
      Object.assign(stored, { peak: c.peak, closedUs: c.closedUs, closedValue: c.closedValue });
    }
    for (const o of plan.opened) this.alerts.push({ ...o, id: ++this.#ids });
    const after = plan.states.find((s) => s.feedId === 1);
    if (after) Object.assign(this.state, { seenUs: after.seenUs, pending: after.pending });
    this.state.open = this.alerts.filter((a) => a.closedUs === null).map((a): OpenAlert => ({
      id: a.id!,
      kind: a.kind,
      sinceUs: a.sinceUs,
      openedUs: a.openedUs,
      threshold: a.threshold,
      peak: a.peak,
    }));
    return plan;
  }

  /** Opens a stale alert as the silence check does. */
  stale(sinceS: number): void {
    this.alerts.push({
      id: ++this.#ids,
      feedId: 1,
      kind: "stale",
      sinceUs: T0 + sinceS * S,
      openedUs: T0 + (sinceS + 60) * S,
      threshold: null,
      openedValue: null,
      peak: null,
      closedUs: null,
      closedValue: null,
      openedBy: null,
      closedBy: null,
    });
    this.batch([]);
  }

  /** The alerts as [kind, since s, opened s, closed s | null, peak]. */
  summary() {
    const s = (us: number | null) => us === null ? null : (us - T0) / S;
    return this.alerts.map((a) => [a.kind, s(a.sinceUs), s(a.openedUs), s(a.closedUs), a.peak]);
  }
}

Deno.test("sideOf: above the max, below the min, inside (bounds included) or no threshold", () => {
  const f = feed();
  assert.equal(sideOf(f, 50.1), "above");
  assert.equal(sideOf(f, -0.1), "below");
  assert.equal(sideOf(f, 50), null);
  assert.equal(sideOf(f, 0), null);
  assert.equal(sideOf(feed({}, { thresholdMax: null }), 1e9), null);
});

Deno.test("a reading out of range opens an alert at once: its reading, threshold, value, peak", () => {
  const t = new Table(feed());
  const opening = row(1, 70);
  const plan = t.batch([row(0, 20), opening]);
  assert.equal(plan.opened.length, 1);
  const a = plan.opened[0];
  assert.equal(a.kind, "above");
  assert.equal(a.openedBy, opening);
  assert.equal(a.openedUs, opening.createdUs);
  assert.equal(a.sinceUs, opening.createdUs);
  assert.deepEqual([a.threshold, a.openedValue, a.peak, a.closedUs], [50, 70, 70, null]);
  assert.deepEqual(plan.states, [{ feedId: 1, seenUs: opening.createdUs, pending: null }]);

  const below = new Table(feed());
  below.batch([row(0, -5)]);
  assert.deepEqual(below.summary(), [["below", 0, 0, null, -5]]);
  assert.equal(below.alerts[0].threshold, 0);
});

Deno.test("the peak follows the excursion: highest above, lowest below; no new alert while open", () => {
  const t = new Table(feed());
  t.batch([row(0, 60)]);
  const plan = t.batch([row(1, 80), row(2, 55)]);
  assert.equal(plan.opened.length, 0);
  assert.equal(plan.changed.length, 1);
  assert.equal(plan.changed[0].peak, 80);
  assert.equal(plan.changed[0].closedBy, null);
  assert.deepEqual(t.summary(), [["above", 0, 0, null, 80]]);

  const b = new Table(feed());
  b.batch([row(0, -1), row(1, -9), row(2, -3)]);
  assert.deepEqual(b.summary(), [["below", 0, 0, null, -9]]);
  // A batch whose reading moves nothing changes no alert row.
  assert.equal(b.batch([row(3, -2)]).changed.length, 0);
});

Deno.test("hysteresis: back inside but within the band keeps it open; past the band closes it", () => {
  const t = new Table(feed({ hysteresis: 5 }));
  t.batch([row(0, 60)]);
  // 50 is inside the range, 46 inside by less than 5: both in the band.
  assert.equal(t.batch([row(1, 50), row(2, 46)]).changed.length, 0);
  assert.equal(t.alerts[0].closedUs, null);
  const closing = row(3, 45);
  const plan = t.batch([closing]);
  assert.equal(plan.changed[0].closedBy, closing);
  assert.deepEqual(t.summary(), [["above", 0, 0, 3, 60]]);
  assert.equal(t.alerts[0].closedValue, 45);

  // Bouncing on the line opens one alert, not one per crossing.
  const bouncing = new Table(feed({ hysteresis: 5 }));
  bouncing.batch([51, 49, 52, 48, 53, 47].map((v, i) => row(i, v)));
  assert.deepEqual(bouncing.summary(), [["above", 0, 0, null, 53]]);
  // Without hysteresis the same values open and close three alerts.
  const plain = new Table(feed());
  plain.batch([51, 49, 52, 48, 53, 47].map((v, i) => row(i, v)));
  assert.equal(plain.alerts.length, 3);

  // Below: closes at min + band.
  const b = new Table(feed({ hysteresis: 2 }));
  b.batch([row(0, -1), row(1, 1.5)]);
  assert.equal(b.alerts[0].closedUs, null);
  b.batch([row(2, 2)]);
  assert.deepEqual(b.summary(), [["below", 0, 0, 2, -1]]);
});

Deno.test("out on the other side closes the alert whatever the band, and opens the other kind", () => {
  const t = new Table(feed({ hysteresis: 100 }));
  t.batch([row(0, 60), row(1, -10)]);
  assert.deepEqual(t.summary(), [["above", 0, 0, 1, 60], ["below", 1, 1, null, -10]]);
});

Deno.test("minimum duration: the value must stay out that long in device time before it opens", () => {
  const t = new Table(feed({ minDurationUs: 10 * S }));
  let plan = t.batch([row(0, 60), row(5, 70)]);
  assert.equal(plan.opened.length, 0);
  assert.deepEqual(plan.states[0].pending, { kind: "above", sinceUs: T0, peak: 70 });
  // The excursion carries over to the next batch; at 10 s it opens, since its first reading.
  plan = t.batch([row(10, 65)]);
  assert.deepEqual(t.summary(), [["above", 0, 10, null, 70]]);
  assert.equal(plan.opened[0].openedValue, 65);
  assert.equal(plan.states[0].pending, null);

  // A reading back in range before then ends the excursion: nothing opens.
  const short = new Table(feed({ minDurationUs: 10 * S }));
  short.batch([row(0, 60), row(5, 49), row(9, 60), row(18, 61)]);
  assert.deepEqual(short.summary(), []);
  assert.equal(short.state.pending?.sinceUs, T0 + 9 * S);
  // A switch of side starts a new excursion.
  const flip = new Table(feed({ minDurationUs: 10 * S }));
  flip.batch([row(0, 60), row(5, -1), row(12, -2)]);
  assert.deepEqual(flip.summary(), []);
  flip.batch([row(15, -3)]);
  assert.deepEqual(flip.summary(), [["below", 5, 15, null, -3]]);
});

Deno.test("readings are judged in device time, whatever their order in the batch", () => {
  const t = new Table(feed({ hysteresis: 5 }));
  // Arrived out of order: in device time it went 60 (opens), 40 (closes), 55 (opens again).
  t.batch([row(2, 55), row(0, 60), row(1, 40)]);
  assert.deepEqual(t.summary(), [["above", 0, 0, 1, 60], ["above", 2, 2, null, 55]]);
});

Deno.test("a late reading does not reopen an alert a newer reading closed, nor close an open one", () => {
  const t = new Table(feed());
  t.batch([row(0, 60), row(5, 20)]);
  assert.deepEqual(t.summary(), [["above", 0, 0, 5, 60]]);
  const late = t.batch([row(3, 99)]);
  assert.deepEqual([late.opened, late.changed, late.states], [[], [], []]);
  assert.deepEqual(t.summary(), [["above", 0, 0, 5, 60]]);

  const open = new Table(feed());
  open.batch([row(0, 20), row(5, 60)]);
  open.batch([row(3, 10)]); // older than the reading that opened it
  assert.deepEqual(open.summary(), [["above", 5, 5, null, 60]]);
});

Deno.test("replaying the same readings twice opens no second alert and changes nothing", () => {
  const readings = () => [row(0, 20), row(1, 60), row(2, 75), row(3, 30), row(4, -4)];
  const t = new Table(feed());
  t.batch(readings());
  const first = t.summary();
  assert.deepEqual(first, [["above", 1, 1, 3, 75], ["below", 4, 4, null, -4]]);
  const again = t.batch(readings());
  assert.deepEqual([again.opened, again.changed, again.states], [[], [], []]);
  assert.deepEqual(t.summary(), first);
});

Deno.test("only stored readings count: one the database refused opens nothing", () => {
  const t = new Table(feed());
  const refused = row(1, 90);
  const plan = t.batch([row(0, 20), refused], new Set([refused]));
  assert.deepEqual(plan.opened, []);
  assert.equal(t.state.seenUs, T0);
});

Deno.test("a text reading has no side: it closes nothing and opens nothing, but is seen", () => {
  const t = new Table(feed());
  t.batch([row(0, 60), row(1, null)]);
  assert.deepEqual(t.summary(), [["above", 0, 0, null, 60]]);
  assert.equal(t.state.seenUs, T0 + S);
});

Deno.test("a stale alert closes at the first reading newer than the last one before the silence", () => {
  const rules = { alertMode: false, watchesSilence: true };
  const t = new Table(feed(rules));
  t.stale(100);
  // Older than the silence's start: a straggler, not a sign of life.
  let plan = t.batch([row(50, 20)]);
  assert.equal(plan.changed.length, 0);
  const waking = row(200, null); // a text reading counts too
  plan = t.batch([row(300, 20), waking]);
  assert.equal(plan.changed.length, 1);
  assert.equal(plan.changed[0].closedBy, waking);
  assert.deepEqual(t.summary(), [["stale", 100, 160, 200, null]]);
  // A feed that only watches silence judges no threshold and keeps no state.
  plan = t.batch([row(400, 999)]);
  assert.deepEqual([plan.opened, plan.states], [[], []]);
});

Deno.test("a stale alert and a threshold alert of one feed live side by side", () => {
  const t = new Table(feed({ watchesSilence: true }));
  t.batch([row(0, 60)]);
  t.stale(0);
  t.batch([row(200, 70)]);
  assert.deepEqual(t.summary(), [["above", 0, 0, null, 70], ["stale", 0, 60, 200, null]]);
});

Deno.test("an alert a batch opens and closes again is one row with both readings", () => {
  const t = new Table(feed());
  const plan = t.batch([row(0, 60), row(1, 10)]);
  assert.equal(plan.opened.length, 1);
  assert.equal(plan.opened[0].openedBy?.createdUs, T0);
  assert.equal(plan.opened[0].closedBy?.createdUs, T0 + S);
});

Deno.test("feeds without a state in the batch's locked set are left alone", () => {
  const plan = planAlerts(new Map(), new Map([[1, feed()]]), [row(0, 99)], null);
  assert.deepEqual(plan, { opened: [], changed: [], states: [] });
});

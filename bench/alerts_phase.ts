/**
 * The `alerts` phase: serve on the same broker, database and traffic as the `serve` phase of
 * the same invocation, with every feed's alert rules on (docs/operations.md, "Alerts"):
 *
 * - `threshold_mode 'alert'` with a `threshold_max` that the last tenth of the run's values
 *   crosses, so each feed opens one `above` alert, which serve also publishes on the alerts
 *   topic (rate-limited per user);
 * - a `max_silence`, which makes every feed one the silence check watches: its last value is
 *   then updated in place instead of appended (src/ingest/write/values.ts), the worst case.
 *
 * Printed beside the plain row as the rollups phase does (issue 26 asks for the cost of alerts
 * stated beside), with the alerts opened against the feeds whose stored readings crossed.
 */
import type postgres from "postgres";
import type { Inflight, PhaseResult } from "./rows.ts";
import { fmtRate } from "./text.ts";

/** What the phase counted in the database after serve stopped. */
export interface AlertsCount {
  inflight: Inflight;
  opened: number;
  /** Feeds with a stored reading above their threshold_max: each should have one alert. */
  crossed: number;
}

/** The publisher's values run 0 … count − 1 (bench/publisher.ts): the last tenth is above. */
export function alertThreshold(count: number): number {
  return Math.floor(count * 0.9);
}

/**
 * Runs `phase` with the rules on every feed, counts the alerts, and turns the rules off
 * again (and empties feed_alerts) so the phases after it run plain.
 */
export async function withAlertRules<T>(
  sql: postgres.Sql,
  count: number,
  inflight: Inflight,
  phase: () => Promise<T>,
): Promise<{ result: T; alerts: AlertsCount }> {
  await sql`
    update feeds set threshold_mode = 'alert', threshold_max = ${alertThreshold(count)},
      max_silence = interval '1 hour'`;
  try {
    const result = await phase();
    const [{ opened }] = await sql<{ opened: number }[]>`
      select count(*)::int as opened from feed_alerts where kind = 'above'`;
    const [{ crossed }] = await sql<{ crossed: number }[]>`
      select count(distinct v.feed_id)::int as crossed
      from feed_values v join feeds f on f.id = v.feed_id
      where v.value > f.threshold_max`;
    return { result, alerts: { inflight, opened, crossed } };
  } finally {
    await sql`delete from feed_alerts`;
    await sql`
      update feeds set threshold_mode = 'reject', threshold_max = null, max_silence = null,
        alert_seen_at = null, alert_pending_kind = null, alert_pending_since = null,
        alert_pending_peak = null`;
  }
}

/** Prints the alerts rows beside the plain serve rows of the same broker setting. */
export function printAlertsCost(rows: readonly PhaseResult[], counts: readonly AlertsCount[]) {
  const alerted = rows.filter((r) => r.phase === "alerts");
  if (alerted.length === 0) return;
  console.log(
    "\nalert rules on every feed (threshold_mode alert, max_silence) beside the plain row:",
  );
  for (const r of alerted) {
    const plain = rows.find((p) => p.phase === "serve" && p.inflight === r.inflight);
    const c = counts.find((x) => x.inflight === r.inflight);
    const opened = c ? `; ${c.opened} alerts opened, ${c.crossed} feeds crossed` : "";
    const pg = (x: PhaseResult) => x.postgresCpuUsPerRow?.toFixed(1) ?? "?";
    const cpu = (x: PhaseResult) => x.cpuUsPerMessage?.toFixed(1) ?? "?";
    if (!plain) {
      console.log(`  ${r.name}: ${fmtRate(r.perSecond)} msg/s (no serve phase)${opened}`);
      continue;
    }
    const cost = (1 - r.perSecond / plain.perSecond) * 100;
    console.log(
      `  ${r.name}: ${fmtRate(r.perSecond)} msg/s vs ${fmtRate(plain.perSecond)} ` +
        `(${cost >= 0 ? "-" : "+"}${Math.abs(cost).toFixed(1)} %); PostgreSQL CPU ${pg(r)} ` +
        `vs ${pg(plain)} µs/row; serve CPU ${cpu(r)} vs ${cpu(plain)} µs/msg${opened}`,
    );
  }
}

/**
 * The fleet scaling curve of `deno task bench` (issue 26; docs/performance.md, "Fleet
 * scale"): the fleet phase (bench/fleet_phase.ts) once per size of `--fleet-sizes`, each at
 * serve's defaults and, with `--fleet-tuned`, at a feed cache sized for the fleet. Its
 * targets: 1M feeds at the defaults ≥ 80 % of the 5,000-feed rate (bench/summary.ts), peak
 * RSS ≤ 400 MB and PostgreSQL ≤ 12 µs/row at 1M feeds.
 */
import type { FleetSize } from "./fleet.ts";
import type { SummaryRow } from "./rows.ts";
import { fmtRate } from "./text.ts";

/** One run of the fleet phase: its fleet and what serve gets beyond the bench's args. */
export interface FleetRun {
  size: FleetSize;
  tuned: boolean;
  serveArgs: string[];
}

/** Devices per user and feeds per device of a fleet given by its number of feeds. */
const DEVICES = 50;
const FEEDS = 10;

/** The fleet of about `feeds` feeds: users × 50 devices × 10 feeds. */
export function fleetOfSize(feeds: number): FleetSize {
  return {
    users: Math.max(1, Math.round(feeds / (DEVICES * FEEDS))),
    devices: DEVICES,
    feeds: FEEDS,
  };
}

/** The fleet phase's runs: each size at the defaults, then (if `tuned`) at a sized cache. */
export function fleetRuns(sizes: FleetSize[], tuned: boolean): FleetRun[] {
  return sizes.flatMap((size) => {
    const feeds = size.users * size.devices * size.feeds;
    const runs: FleetRun[] = [{ size, tuned: false, serveArgs: [] }];
    if (tuned) {
      // Every feed fits (README, --feed-cache-size). The TTL stays at its default: the
      // change counter (sql/017) keeps what has not changed past it.
      const cache = String(Math.ceil(feeds * 11 / 10));
      runs.push({ size, tuned: true, serveArgs: ["--feed-cache-size", cache] });
    }
    return runs;
  });
}

/** The row name of a run. */
export function fleetRowName(feeds: number, tuned: boolean): string {
  return `fleet, ${fmtRate(feeds)} feeds, warm${tuned ? ", tuned cache" : ""}`;
}

export const FLEET_RSS_TARGET_MB = 400;
export const FLEET_PG_TARGET_US = 12;

/** One point of the curve, as printed and plotted (scripts/fleet_plot.ts). */
export interface CurvePoint {
  feeds: number;
  tuned: boolean;
  perSecond: number;
  ratioTo5k: number | null;
  peakRssMb: number | null;
  /** All of the server's CPU per row (the bench's usual figure: on a shared server, others' too). */
  postgresUsPerRow: number | null;
  /** The CPU per row of the backends serving the fleet's database only. */
  postgresBackendUsPerRow: number | null;
  /** WAL bytes and full-page images per row of the measured pass (the whole server's). */
  walBytesPerRow: number | null;
  walFpiPerRow: number | null;
  /** Feeds looked up in `feeds` per batch (index probes; 0: the cache held them all). */
  lookupsPerBatch: number | null;
}

/** The curve's points from the run's fleet rows; shares against the 5,000-feed run. */
export function curvePoints(rows: SummaryRow[]): CurvePoint[] {
  const fleets = rows.filter((r) => r.phase === "fleet");
  const base = fleets.find((r) => Number(r.extra?.feeds) <= 5000 && !r.extra?.tunedCache);
  return fleets.map((r) => {
    const e = r.extra ?? {};
    const lookups = e.feedLookups as { measuredProbes?: number; measuredBatches: number };
    return {
      feeds: Number(e.feeds),
      tuned: Boolean(e.tunedCache),
      perSecond: r.perSecond ?? 0,
      // The 5,000-feed fleet run if there is one, else the serve phase (also 5,000 feeds).
      ratioTo5k: base?.perSecond
        ? (r.perSecond ?? 0) / base.perSecond
        : (e.ratioToServe as number | null) ?? null,
      peakRssMb: r.peakRssMb ?? null,
      postgresUsPerRow: r.postgresCpuUsPerRow ?? null,
      postgresBackendUsPerRow: (e.postgresBackendUsPerRow as number | null) ?? null,
      walBytesPerRow: (e.walBytesPerRow as number | null) ?? null,
      walFpiPerRow: (e.walFpiPerRow as number | null) ?? null,
      lookupsPerBatch: lookups?.measuredProbes !== undefined && lookups.measuredBatches > 0
        ? lookups.measuredProbes / lookups.measuredBatches
        : null,
    };
  });
}

const cell = (v: number | null, digits: number) => (v === null ? "–" : v.toFixed(digits));

/** The curve as a markdown table, with met / not met for the 1M-feed targets. */
export function printCurve(rows: SummaryRow[]): void {
  const points = curvePoints(rows);
  if (points.length === 0) return;
  console.log("\nfleet scaling curve (measured pass, warm):");
  console.log(
    "| feeds | cache | stored/s | share of 5k | peak RSS MB | PostgreSQL µs/row (server) | " +
      "PostgreSQL µs/row (its backends) | feeds looked up/batch | WAL bytes/row | full-page images/row |",
  );
  console.log("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const p of points) {
    console.log(
      `| ${fmtRate(p.feeds)} | ${p.tuned ? "tuned" : "defaults"} | ${fmtRate(p.perSecond)} | ${
        p.ratioTo5k === null ? "–" : `${(p.ratioTo5k * 100).toFixed(0)}%`
      } | ${cell(p.peakRssMb, 0)} | ${cell(p.postgresUsPerRow, 1)} | ${
        cell(p.postgresBackendUsPerRow, 1)
      } | ${cell(p.lookupsPerBatch, 0)} | ${cell(p.walBytesPerRow, 0)} | ${
        cell(p.walFpiPerRow, 3)
      } |`,
    );
  }
  for (const p of points.filter((p) => p.feeds >= 1_000_000)) {
    const at = `${fmtRate(p.feeds)} feeds, ${p.tuned ? "tuned cache" : "defaults"}`;
    const verdict = (ok: boolean | null) => ok === null ? "not measured" : ok ? "met" : "not met";
    if (!p.tuned) {
      console.log(
        `target ≥ 80% of the 5k rate (${at}): ${
          verdict(p.ratioTo5k === null ? null : p.ratioTo5k >= 0.8)
        }`,
      );
    }
    console.log(
      `target peak RSS ≤ ${FLEET_RSS_TARGET_MB} MB (${at}): ${
        verdict(p.peakRssMb === null ? null : p.peakRssMb <= FLEET_RSS_TARGET_MB)
      }`,
    );
    // The server's CPU, as the issue measured it; on a shared server its backends' is the
    // fairer figure, printed beside.
    console.log(
      `target PostgreSQL ≤ ${FLEET_PG_TARGET_US} µs/row (${at}): ${
        verdict(p.postgresUsPerRow === null ? null : p.postgresUsPerRow <= FLEET_PG_TARGET_US)
      } (server ${cell(p.postgresUsPerRow, 1)}, its backends ${
        cell(p.postgresBackendUsPerRow, 1)
      })`,
    );
  }
}

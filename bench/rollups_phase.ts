/**
 * The `rollups` phase: serve with `--rollups 1m,1h,1d` (src/ingest/write/rollups.ts) on
 * the same broker, database and traffic as the `serve` phase of the same invocation, and
 * its cost beside that plain run: throughput and PostgreSQL CPU per row (issue 23's
 * budget: at most 15 % of throughput). `--serve-args=--rollups=1m,1h,1d` runs every serve
 * phase with rollups instead.
 */
import type { PhaseResult } from "./rows.ts";
import { fmtRate } from "./text.ts";

/** The widths the phase keeps. */
export const BENCH_ROLLUP_WIDTHS = "1m,1h,1d";

/** The same widths as the processor takes them (src/cli/rollup_options.ts). */
export const BENCH_ROLLUP_INTERVALS = ["1 minutes", "1 hours", "1 days"];

/** With their lengths, for the watermarks (src/db/rollup_folds.ts). */
export const BENCH_ROLLUP_FOLD_WIDTHS = [
  { interval: "1 minutes", ms: 60_000 },
  { interval: "1 hours", ms: 3_600_000 },
  { interval: "1 days", ms: 86_400_000 },
];

/** serve's flags in the phase. */
export function rollupServeArgs(serveArgs: readonly string[]): string[] {
  return [...serveArgs, "--rollups", BENCH_ROLLUP_WIDTHS];
}

/** Prints the rollups rows beside the plain serve rows of the same broker setting. */
export function printRollupsCost(rows: readonly PhaseResult[]): void {
  const rolled = rows.filter((r) => r.phase === "rollups");
  if (rolled.length === 0) return;
  console.log(`\n--rollups ${BENCH_ROLLUP_WIDTHS} beside the plain row of the same run:`);
  for (const r of rolled) {
    const base = r.inflight === null ? "processor" : "serve";
    const plain = rows.find((p) => p.phase === base && p.inflight === r.inflight);
    const pg = (x: PhaseResult) => x.postgresCpuUsPerRow?.toFixed(1) ?? "?";
    if (!plain) {
      console.log(`  ${r.name}: ${fmtRate(r.perSecond)} msg/s (no ${base} phase)`);
      continue;
    }
    const cost = (1 - r.perSecond / plain.perSecond) * 100;
    console.log(
      `  ${r.name}: ${fmtRate(r.perSecond)} msg/s vs ${fmtRate(plain.perSecond)} ` +
        `(${cost >= 0 ? "-" : "+"}${Math.abs(cost).toFixed(1)} %); PostgreSQL CPU ${pg(r)} ` +
        `vs ${pg(plain)} µs/row; serve CPU ${r.cpuUsPerMessage?.toFixed(1) ?? "?"} vs ` +
        `${plain.cpuUsPerMessage?.toFixed(1) ?? "?"} µs/msg`,
    );
  }
}

/**
 * The memory budget in the benchmark (issue 26): serve runs with the V8 heap limits its
 * bounds call for (src/ingest/memory_budget.ts, docs/performance.md "Memory budget"),
 * and its measured peak RSS is checked against the budget's bound and against 250 MB.
 */
import { serveOptions } from "../src/cli/serve_options.ts";
import { processingOptions } from "../src/cli/option_groups.ts";
import { type MemoryBudget, memoryBudget } from "../src/ingest/memory_budget.ts";
import type { SummaryRow } from "./rows.ts";

/** The value of `--flag` in serve's arguments, or undefined. */
function flagValue(args: string[], flag: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === `--${flag}`) return args[i + 1];
    if (args[i].startsWith(`--${flag}=`)) return args[i].slice(flag.length + 3);
  }
  return undefined;
}

/** serve's budget with these arguments (its defaults for what they do not set). */
export function budgetOfServeArgs(serveArgs: string[]): MemoryBudget {
  const of = <T>(o: { flag: string; schema: { parse(v: unknown): T } }) =>
    o.schema.parse(flagValue(serveArgs, o.flag));
  return memoryBudget({
    queueBytes: of(serveOptions.queueBytes),
    maxBatchBytes: of(processingOptions.maxBatchBytes),
    feedCacheSize: of(processingOptions.feedCacheSize),
  });
}

/** serve's `--v8-flags` from `--serve-v8-flags`: "budget", "none", or as given. */
export function serveV8Flags(mode: string, serveArgs: string[]): string | undefined {
  if (mode === "none") return undefined;
  return mode === "budget" ? budgetOfServeArgs(serveArgs).v8Flags : mode;
}

/** One line per serve row: its peak RSS against the budget and against 250 MB. */
export function memoryTargetLines(
  rows: SummaryRow[],
  serveArgs: string[],
  v8Flags: string | undefined,
): { target: string; measured: string; result: "met" | "not met" }[] {
  const b = budgetOfServeArgs(serveArgs);
  const formula = `${b.peakRssMb} MB = native + old space ${b.oldSpaceMb} + young ${b.youngMb} ` +
    `+ payloads ${(b.queuesMb + b.batchMb).toFixed(0)}`;
  const measured = (r: SummaryRow) => ["serve", "hold"].includes(r.phase) && r.peakRssMb;
  return rows.filter(measured).map((r) => ({
    target: `peak RSS ≤ budget (${formula}) and ≤ 250 MB, serve --v8-flags=${v8Flags ?? "(none)"}`,
    measured: `${r.name}: peak RSS ${r.peakRssMb!.toFixed(0)} MB`,
    result: r.peakRssMb! <= Math.min(b.peakRssMb, 250) ? "met" : "not met",
  }));
}

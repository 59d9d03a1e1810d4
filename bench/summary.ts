/**
 * The end of `deno task bench`: one summary table (one row per phase and broker setting)
 * and the targets of issue 15, each with the value measured in this run and whether it
 * was met. Pure formatting and arithmetic; bench/main.ts prints what these return.
 */
import type { HoldResult } from "./hold.ts";
import type { ScaleResult } from "./scale.ts";
import type { WindowProbe } from "./window.ts";
import { fmtRate } from "./text.ts";
import type { Inflight, Load, PhaseResult, SummaryRow } from "./rows.ts";

/** "broker limit (inflight 0)"; phases without MQTT keep their plain name. */
export function phaseName(base: string, inflight: Inflight): string {
  return inflight === null ? base : `${base} (inflight ${inflight})`;
}

/** The hold phase as a summary row: messages held and the memory they took. */
export function holdRow(h: HoldResult & Load, inflight: Inflight): SummaryRow {
  return {
    name: phaseName("hold", inflight),
    phase: "hold",
    inflight,
    messages: h.held,
    lost: h.published - h.stored,
    peakRssMb: h.peakRssMb,
    loadBefore: h.loadBefore,
    loadAfter: h.loadAfter,
    extra: { bytesPerHeld: Math.round(h.bytesPerHeld) },
  };
}

/** One summary row per scale configuration, CPU from its per-process seconds. */
export function scaleRows(results: ScaleResult[], inflight: Inflight): PhaseResult[] {
  return results.map((r) => {
    const serveCpu = Object.entries(r.cpu).filter(([k]) => k.startsWith("serve#"))
      .reduce((sum, [, s]) => sum + s, 0);
    const perMessage = (seconds: number | undefined, n: number) =>
      seconds === undefined || n === 0 ? undefined : Number(((seconds * 1e6) / n).toFixed(1));
    return {
      name: phaseName(`scale, ${r.instances} serve`, inflight),
      phase: "scale",
      inflight,
      messages: r.stored,
      seconds: r.seconds,
      perSecond: r.perSecond,
      lost: r.published - r.stored,
      cpuUsPerMessage: perMessage(serveCpu, r.stored),
      postgresCpuUsPerRow: perMessage(r.cpu.postgres, r.stored),
      brokerCpuUsPerMessage: perMessage(r.cpu.mosquitto, r.published),
      publisherCpuUsPerMessage: perMessage(r.cpu.publisher, r.published),
      loadBefore: r.loadBefore,
      loadAfter: r.loadAfter,
    };
  });
}

/**
 * Prints rows as a Markdown table: text columns (the first `textColumns`) left-aligned,
 * numbers right-aligned.
 */
export function printMarkdownTable(head: string[], rows: string[][], textColumns = 1): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const left = (i: number) => i < textColumns;
  const line = (cells: string[]) =>
    "| " + cells.map((c, i) => (left(i) ? c.padEnd(widths[i]) : c.padStart(widths[i])))
      .join(" | ") +
    " |";
  console.log("\n" + line(head));
  console.log(
    "|" + widths.map((w, i) => (left(i) ? `-${"-".repeat(w)}-` : `-${"-".repeat(w)}:`)).join("|") +
      "|",
  );
  for (const r of rows) console.log(line(r));
}

const SUMMARY_HEAD = [
  "measurement",
  "inflight",
  "messages",
  "seconds",
  "msgs/s",
  "% of broker limit",
  "p50 ms",
  "p99 ms",
  "lost",
  "dropped",
  "most queued",
  "peak RSS MB",
  "serve CPU µs/msg",
  "PostgreSQL CPU µs/row",
  "broker CPU µs/msg",
  "publisher CPU µs/msg",
  "load before → after",
];

function cell(n: number | undefined, digits = 0): string {
  return n === undefined || Number.isNaN(n) ? "" : n.toFixed(digits);
}

function summaryCells(r: SummaryRow): string[] {
  return [
    r.name,
    r.inflight === null ? "—" : String(r.inflight),
    String(r.messages),
    cell(r.seconds, 2),
    r.perSecond === undefined ? "" : fmtRate(r.perSecond),
    r.ratioToBroker === undefined ? "" : `${(r.ratioToBroker * 100).toFixed(1)}%`,
    cell(r.p50Ms),
    cell(r.p99Ms),
    cell(r.lost),
    cell(r.dropped),
    cell(r.mostQueued),
    cell(r.peakRssMb),
    cell(r.cpuUsPerMessage, 1),
    cell(r.postgresCpuUsPerRow, 1),
    cell(r.brokerCpuUsPerMessage, 1),
    cell(r.publisherCpuUsPerMessage, 1),
    r.loadBefore && r.loadAfter
      ? `${r.loadBefore[0].toFixed(2)} → ${r.loadAfter[0].toFixed(2)}`
      : "",
  ];
}

/** Prints the summary table, one row per phase and setting. */
export function printSummary(rows: SummaryRow[]): void {
  printMarkdownTable(SUMMARY_HEAD, rows.map(summaryCells));
  console.log(
    "\nserve CPU µs/msg is the measured process's: the counting subscriber in broker rows, " +
      "the bench itself in the processor row, every instance in scale rows. Load: 1-minute " +
      "average before → after the phase.",
  );
}

/** The window probe of one broker setting. */
export interface WindowOnSetting extends WindowProbe {
  inflight: Inflight;
}

/** Lines under the table: what the columns cannot hold, by phase and setting. */
export function printNotes(rows: SummaryRow[], windows: WindowOnSetting[]): void {
  console.log("");
  for (const w of windows) {
    console.log(
      `${phaseName("window", w.inflight)}: ${w.withoutAcks} messages without acks, ` +
        `${w.withBurstAcks} at most outstanding with acks sent in bursts (Receive Maximum 20)`,
    );
  }
  const db = rows.find((r) => r.phase === "db");
  for (const r of rows) {
    if (r.phase === "serve") printServeNote(r, rows, db);
    if (r.phase === "fleet") printFleetNote(r);
  }
}

function printServeNote(serve: SummaryRow, rows: SummaryRow[], db: SummaryRow | undefined): void {
  const e = serve.extra ?? {};
  console.log(
    `${serve.name}: ${e.batches} batches (mean ${e.meanBatch} messages), most unacked seen ` +
      `${e.maxUnackedSeen}, ${serve.rejected} rejected, ${e.skipped} skipped, latency ` +
      `${serve.latencyFrom} (commit clock every ${e.commitClockIntervalMs} ms)` +
      (Number(e.publishRate) > 0
        ? `; publish rate capped at ${fmtRate(Number(e.publishRate))}/s`
        : ""),
  );
  const broker = rows.find((r) => r.phase === "broker" && r.inflight === serve.inflight);
  const limits = [broker, db].filter((r): r is SummaryRow => r?.perSecond !== undefined);
  if (limits.length === 0 || serve.perSecond === undefined) return;
  const slower = limits.reduce((a, b) => (a.perSecond! <= b.perSecond! ? a : b));
  console.log(
    `  = ${((serve.perSecond / slower.perSecond!) * 100).toFixed(1)}% of the slower limit ` +
      `(${slower.name}, ${fmtRate(slower.perSecond!)}/s)`,
  );
}

/** A count, or "?" where the run could not read it. */
function known(n: unknown): string {
  return typeof n === "number" && Number.isFinite(n) ? String(n) : "?";
}

function printFleetNote(fleet: SummaryRow): void {
  const e = fleet.extra ?? {};
  const w = e.warmUp as { perSecond: number; seconds: number; stored: number };
  const l = e.feedLookups as Record<string, number | null>;
  const rss = e.idleRssMb as Record<string, number>;
  const ratio = e.ratioToServe as number | null;
  console.log(
    `${fleet.name}: ${fmtRate(Number(e.feeds))} feeds; warm-up pass ${w.stored} stored at ` +
      `${fmtRate(w.perSecond)}/s, ${l.warmUp ?? "?"} feed lookups in ${l.warmUpBatches} ` +
      `batches; measured pass ${l.measured ?? "?"} feed lookups in ${l.measuredBatches} ` +
      `batches; warm rate = ${ratio === null ? "?" : (ratio * 100).toFixed(1)}% of the ` +
      `5,000-feed serve rate; feed cache ≈ ${e.feedCacheBytesPerFeed} B/feed (idle VmRSS ` +
      `${rss.beforeWarmUp} → ${rss.afterWarmUp} MB, ${rss.end} MB at the end); measured ` +
      `pass: ${known(e.feedCacheMisses)} feed cache misses, ${known(e.feedCacheClears)} ` +
      `clears (serve's /metrics)`,
  );
}

/** What a target came to in this run. */
export type TargetResult = "met" | "not met" | "not measured in this run";

/** One line of the targets table. */
export interface TargetLine {
  target: string;
  inflight: Inflight;
  measured: string;
  result: TargetResult;
}

/** What the targets are judged from. */
export interface TargetInput {
  qos: 0 | 1;
  /** --rate as given: "0", a number of messages/s, or "N%". */
  rate: string;
  serveArgs: string[];
  rows: SummaryRow[];
}

const MAX_RSS_MB = 250;
const SERVE_DEFAULT_BATCH_INTERVAL_MS = 10_000;

/** serve's batch interval: its default unless --serve-args sets --batch-interval-ms. */
export function batchIntervalMs(serveArgs: string[]): number {
  for (let i = 0; i < serveArgs.length; i++) {
    const a = serveArgs[i];
    if (a === "--batch-interval-ms") return Number(serveArgs[i + 1]);
    if (a.startsWith("--batch-interval-ms=")) return Number(a.slice(a.indexOf("=") + 1));
  }
  return SERVE_DEFAULT_BATCH_INTERVAL_MS;
}

function notMeasured(target: string, why: string): TargetLine {
  return { target, inflight: null, measured: why, result: "not measured in this run" };
}

function verdict(ok: boolean): TargetResult {
  return ok ? "met" : "not met";
}

function rowsOf(input: TargetInput, phase: string): SummaryRow[] {
  return input.rows.filter((r) => r.phase === phase);
}

const QOS1_TARGET = "QoS 1 flat out, broker without in-flight cap: serve ≥ 70% of the " +
  `same-run broker limit, 0 lost, peak RSS ≤ ${MAX_RSS_MB} MB`;

function qos1Targets(input: TargetInput): TargetLine[] {
  if (input.qos !== 1) return [notMeasured(QOS1_TARGET, "run with --qos 1")];
  if (!isFlatOut(input.rate)) {
    return [notMeasured(QOS1_TARGET, "run without --rate (flat out)")];
  }
  const serves = rowsOf(input, "serve");
  if (serves.length === 0) return [notMeasured(QOS1_TARGET, "the serve phase did not run")];
  return serves.map((s) => {
    const measured = `serve ${fmtRate(s.perSecond ?? 0)}/s = ${pct(s.ratioToBroker)} of the ` +
      `broker limit, ${s.lost} lost, peak RSS ${cell(s.peakRssMb)} MB`;
    if (s.ratioToBroker === undefined) {
      return { ...notMeasured(QOS1_TARGET, `${measured} (no broker phase)`), inflight: s.inflight };
    }
    const ok = s.ratioToBroker >= 0.7 && s.lost === 0 && (s.peakRssMb ?? Infinity) <= MAX_RSS_MB;
    return { target: QOS1_TARGET, inflight: s.inflight, measured, result: verdict(ok) };
  });
}

const QOS0_TARGET = "QoS 0 at 50,000 msg/s offered: 0 dropped, peak RSS ≤ " + `${MAX_RSS_MB} MB`;
const QOS0_OFFERED = 50_000;

function qos0Targets(input: TargetInput): TargetLine[] {
  if (input.qos !== 0 || isFlatOut(input.rate)) {
    return [notMeasured(QOS0_TARGET, "run with --qos 0 --rate 50000")];
  }
  const serves = rowsOf(input, "serve");
  if (serves.length === 0) return [notMeasured(QOS0_TARGET, "the serve phase did not run")];
  return serves.map((s) => {
    const published = Number(s.extra?.published ?? 0);
    const offered = published / Number(s.extra?.publishSeconds ?? NaN);
    const short = offered < QOS0_OFFERED ? ` (short of the ${fmtRate(QOS0_OFFERED)}/s asked)` : "";
    const measured = `publisher offered ${fmtRate(offered)}/s${short}, ${s.dropped} dropped, ` +
      `${s.lost} lost, peak RSS ${cell(s.peakRssMb)} MB`;
    // Loss is worse than a counted drop, so it fails the target too.
    const ok = s.dropped === 0 && s.lost === 0 && (s.peakRssMb ?? Infinity) <= MAX_RSS_MB;
    return { target: QOS0_TARGET, inflight: s.inflight, measured, result: verdict(ok) };
  });
}

const FLEET_TARGET = "1M-feed fleet, warm: ≥ 80% of the 5,000-feed rate";
const FLEET_TARGET_FEEDS = 1_000_000;

function fleetTargets(input: TargetInput): TargetLine[] {
  // The target is at serve's defaults; tuned-cache runs are on the curve (bench/fleet_curve.ts).
  const fleets = rowsOf(input, "fleet").filter((r) => !r.extra?.tunedCache);
  if (fleets.length === 0) return [notMeasured(FLEET_TARGET, "add fleet to --phases")];
  return fleets.map((f) => {
    const ratio = f.extra?.ratioToServe as number | null | undefined;
    const measured = `${fmtRate(f.perSecond ?? 0)}/s over ${
      fmtRate(Number(f.extra?.feeds))
    } feeds = ${pct(ratio ?? undefined)} of the 5,000-feed serve rate`;
    const unmeasured = (why: string) => ({
      ...notMeasured(FLEET_TARGET, `${measured} (${why})`),
      inflight: f.inflight,
    });
    if (ratio === null || ratio === undefined) return unmeasured("no serve phase on this setting");
    if (Number(f.extra?.feeds) < FLEET_TARGET_FEEDS) {
      return unmeasured(`a smaller fleet than the target's ${fmtRate(FLEET_TARGET_FEEDS)} feeds`);
    }
    return { target: FLEET_TARGET, inflight: f.inflight, measured, result: verdict(ratio >= 0.8) };
  });
}

function latencyTargets(input: TargetInput): TargetLine[] {
  const limitMs = input.qos === 1 ? 1000 : batchIntervalMs(input.serveArgs) + 1000;
  const target = `latency at --rate 50%: p99 publish→commit ≤ ${limitMs / 1000} s` +
    (input.qos === 1 ? " (QoS 1)" : " (QoS 0: batch interval + 1 s)");
  if (!/^50(\.0*)?%$/.test(input.rate)) return [notMeasured(target, "run with --rate 50%")];
  const serves = rowsOf(input, "serve");
  if (serves.length === 0) return [notMeasured(target, "the serve phase did not run")];
  return serves.map((s) => ({
    target,
    inflight: s.inflight,
    measured: `p99 ${cell(s.p99Ms)} ms (p50 ${cell(s.p50Ms)} ms), ${s.lost} lost`,
    result: s.p99Ms === undefined ? "not measured in this run" : verdict(s.p99Ms <= limitMs),
  }));
}

export function isFlatOut(rate: string): boolean {
  return Number(rate.replace(/%$/, "")) === 0;
}

function pct(ratio: number | undefined): string {
  return ratio === undefined ? "?%" : `${(ratio * 100).toFixed(1)}%`;
}

/** Issue 15's targets against this run's rows. */
export function evaluateTargets(input: TargetInput): TargetLine[] {
  return [
    ...qos1Targets(input),
    ...qos0Targets(input),
    ...fleetTargets(input),
    ...latencyTargets(input),
  ];
}

/** Prints the targets table. */
export function printTargets(lines: TargetLine[]): void {
  printMarkdownTable(
    ["target (issue 15)", "inflight", "measured", "result"],
    lines.map((t) => [
      t.target,
      t.inflight === null ? "—" : String(t.inflight),
      t.measured,
      t.result,
    ]),
    4,
  );
}

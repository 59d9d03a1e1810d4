/**
 * Draws the fleet scaling curve of a `deno task bench --fleet-sizes ...` results file as an
 * SVG (docs/performance.md, "Fleet scale"): three panels over the fleet size (log scale),
 * the stored rate as a share of the 5,000-feed rate, serve's peak RSS and PostgreSQL's
 * CPU µs per row, at the defaults and at a tuned cache, with the targets dashed. No
 * dependencies: the SVG is written as text.
 *
 *   deno run -A scripts/fleet_plot.ts bench/results/<run>.json docs/fleet-scaling.svg
 *   deno fmt docs/fleet-scaling.svg   # deno fmt formats SVG too (deno task check)
 */
import {
  type CurvePoint,
  curvePoints,
  FLEET_PG_TARGET_US,
  FLEET_RSS_TARGET_MB,
} from "../bench/fleet_curve.ts";
import type { SummaryRow } from "../bench/rows.ts";

interface Panel {
  title: string;
  value(p: CurvePoint): number | null;
  target: number;
  /** Whether the target is a floor (≥) or a ceiling (≤). */
  floor: boolean;
  unit: string;
}

const PANELS: Panel[] = [
  {
    title: "stored rate, share of 5k feeds",
    value: (p) => p.ratioTo5k === null ? null : p.ratioTo5k * 100,
    target: 80,
    floor: true,
    unit: "%",
  },
  {
    title: "serve peak RSS",
    value: (p) => p.peakRssMb,
    target: FLEET_RSS_TARGET_MB,
    floor: false,
    unit: "MB",
  },
  {
    // Its backends only: the server's total also counts other clients of a shared server.
    title: "PostgreSQL CPU per row (its backends)",
    value: (p) => p.postgresBackendUsPerRow ?? p.postgresUsPerRow,
    target: FLEET_PG_TARGET_US,
    floor: false,
    unit: "µs",
  },
];

const W = 300, H = 220, M = { left: 48, right: 12, top: 28, bottom: 40 };
const SERIES = [
  { tuned: false, name: "defaults", color: "#1f77b4" },
  { tuned: true, name: "tuned cache", color: "#d62728" },
];

function panelSvg(panel: Panel, points: CurvePoint[], x0: number): string {
  const xs = points.map((p) => Math.log10(p.feeds));
  const xMin = Math.min(...xs) - 0.1, xMax = Math.max(...xs) + 0.1;
  const values = points.map(panel.value).filter((v): v is number => v !== null);
  const yMax = Math.max(panel.target, ...values) * 1.15;
  const px = (feeds: number) =>
    x0 + M.left + (Math.log10(feeds) - xMin) / (xMax - xMin) * (W - M.left - M.right);
  const py = (v: number) => M.top + (1 - v / yMax) * (H - M.top - M.bottom);
  const out: string[] = [];
  out.push(
    `<text x="${x0 + W / 2}" y="16" text-anchor="middle" font-weight="bold">${panel.title}</text>`,
  );
  // Axes, y ticks, x ticks at the measured sizes.
  out.push(
    `<line x1="${x0 + M.left}" y1="${py(0)}" x2="${x0 + W - M.right}" y2="${
      py(0)
    }" stroke="#333"/>`,
    `<line x1="${x0 + M.left}" y1="${M.top}" x2="${x0 + M.left}" y2="${py(0)}" stroke="#333"/>`,
  );
  for (let i = 0; i <= 4; i++) {
    const v = yMax / 4 * i;
    out.push(
      `<text x="${x0 + M.left - 4}" y="${py(v) + 4}" text-anchor="end">${
        v >= 10 ? v.toFixed(0) : v.toFixed(1)
      }</text>`,
    );
  }
  for (const feeds of [...new Set(points.map((p) => p.feeds))]) {
    const label = feeds >= 1e6 ? `${feeds / 1e6}M` : `${feeds / 1e3}k`;
    out.push(`<text x="${px(feeds)}" y="${py(0) + 14}" text-anchor="middle">${label}</text>`);
  }
  out.push(
    `<text x="${x0 + W / 2}" y="${H - 8}" text-anchor="middle">feeds (log), ${panel.unit}</text>`,
  );
  const t = py(panel.target);
  out.push(
    `<line x1="${x0 + M.left}" y1="${t}" x2="${x0 + W - M.right}" y2="${t}" stroke="#2a2" ` +
      `stroke-dasharray="4 3"/>`,
    `<text x="${x0 + W - M.right}" y="${t - 3}" text-anchor="end" fill="#2a2">target ${
      panel.floor ? "≥" : "≤"
    } ${panel.target}</text>`,
  );
  for (const s of SERIES) {
    const pts = points.filter((p) => p.tuned === s.tuned && panel.value(p) !== null)
      .sort((a, b) => a.feeds - b.feeds);
    if (pts.length === 0) continue;
    const path = pts.map((p) => `${px(p.feeds).toFixed(1)},${py(panel.value(p)!).toFixed(1)}`);
    out.push(`<polyline points="${path.join(" ")}" fill="none" stroke="${s.color}"/>`);
    for (const p of pts) {
      out.push(
        `<circle cx="${px(p.feeds).toFixed(1)}" cy="${py(panel.value(p)!).toFixed(1)}" r="3" ` +
          `fill="${s.color}"/>`,
      );
    }
  }
  return out.join("\n");
}

/** The SVG of `points`, captioned with the run's id and load averages. */
export function curveSvg(points: CurvePoint[], caption: string): string {
  const width = W * PANELS.length;
  const height = H + 24;
  const legend = SERIES.map((s, i) =>
    `<rect x="${10 + i * 120}" y="${H + 8}" width="10" height="10" fill="${s.color}"/>` +
    `<text x="${24 + i * 120}" y="${H + 17}">${s.name}</text>`
  );
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...PANELS.map((p, i) => panelSvg(p, points, i * W)),
    ...legend,
    `<text x="${width - 6}" y="${H + 17}" text-anchor="end" fill="#555">${caption}</text>`,
    `</svg>`,
    "",
  ].join("\n");
}

if (import.meta.main) {
  const [input, output] = Deno.args;
  if (!input || !output) {
    console.error("usage: deno run -A scripts/fleet_plot.ts <results.json> <out.svg>");
    Deno.exit(2);
  }
  const results = JSON.parse(await Deno.readTextFile(input)) as {
    runId: string;
    results: SummaryRow[];
    machine: { loadAvgAtStart: number[]; loadAvgAtEnd: number[] };
  };
  const points = curvePoints(results.results);
  if (points.length === 0) {
    console.error(`${input} has no fleet rows: run the bench with --phases fleet`);
    Deno.exit(1);
  }
  const load = (l: number[]) => l.map((x) => x.toFixed(1)).join(" ");
  const caption = `run ${results.runId}, 2-core host shared with other work, load avg ${
    load(results.machine.loadAvgAtStart)
  } → ${load(results.machine.loadAvgAtEnd)}`;
  await Deno.writeTextFile(output, curveSvg(points, caption));
  console.log(`wrote ${output}: ${points.length} points`);
}

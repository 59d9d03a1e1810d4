/// <reference lib="dom" />
/**
 * The status page's charts, embedded like src/ops/status_page_script.ts (as source, so it
 * must use nothing from outside its own body): `statusPageCharts()` runs first in the page
 * and its result is `globalThis.feedlineCharts`, which the script draws with.
 *
 * A series is drawn in runs: a null (a sample without a batch, an idle gap) ends a line
 * instead of being bridged by a straight one, and a value alone between gaps (two batches
 * in ten minutes) is a dot, not an invisible one-point line.
 */
export function statusPageCharts() {
  type Series = { values: (number | null)[]; color: string };
  const SVG = "http://www.w3.org/2000/svg";

  function fmt(n: number): string {
    if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return Number.isInteger(n) ? String(n) : n.toFixed(n < 10 ? 2 : 1);
  }
  function svgEl(tag: string, attrs: Record<string, string | number>) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }

  /** The runs of consecutive non-null values, as lists of their indexes. */
  function runs(values: (number | null)[]): number[][] {
    const out: number[][] = [];
    let run: number[] = [];
    values.forEach((v, i) => {
      if (v === null) {
        if (run.length) out.push(run);
        run = [];
      } else run.push(i);
    });
    if (run.length) out.push(run);
    return out;
  }

  /** Line chart of several series over shared x (epoch ms). */
  function chart(svg: Element, xs: number[], series: Series[]) {
    const [w, h] = svg.getAttribute("viewBox")!.split(" ").slice(2).map(Number);
    const pad = { l: 40, r: 6, t: 8, b: 16 };
    svg.replaceChildren();
    let max = 0;
    for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
    max = max > 0 ? max * 1.1 : 1;
    const x0 = xs.length ? xs[0] : 0, x1 = xs.length ? xs[xs.length - 1] : 1;
    const sx = (x: number) =>
      pad.l + (x1 === x0 ? 0 : ((x - x0) / (x1 - x0)) * (w - pad.l - pad.r));
    const sy = (v: number) => h - pad.b - (v / max) * (h - pad.t - pad.b);
    for (const f of [0, 0.5, 1]) {
      const y = sy(max * f);
      svg.append(svgEl("line", { x1: pad.l, x2: w - pad.r, y1: y, y2: y, stroke: "#e3e6ec" }));
      const label = svgEl("text", {
        x: pad.l - 4,
        y: y + 4,
        "text-anchor": "end",
        "font-size": 10,
        fill: "#6b7385",
      });
      label.textContent = fmt(max * f);
      svg.append(label);
    }
    for (const s of series) {
      for (const run of runs(s.values)) {
        const at = (i: number) => sx(xs[i]).toFixed(1) + "," + sy(s.values[i]!).toFixed(1);
        // A lone value: a round cap on a zero-length line, round on screen whatever the
        // chart's stretch (a circle would be squashed by preserveAspectRatio="none").
        const lone = run.length === 1;
        svg.append(svgEl("path", {
          d: lone ? "M" + at(run[0]) + "h0" : run.map((i, k) => (k ? "L" : "M") + at(i)).join(""),
          fill: "none",
          stroke: s.color,
          "stroke-width": lone ? 6 : 2,
          "stroke-linecap": "round",
          "vector-effect": "non-scaling-stroke",
          ...(lone ? { "data-dot": "" } : {}),
        }));
      }
    }
  }

  function sparkline(points: [number, number][]) {
    const svg = svgEl("svg", {
      viewBox: "0 0 200 30",
      preserveAspectRatio: "none",
      height: 30,
      class: "spark",
    });
    if (points.length < 2) return svg;
    let lo = Infinity, hi = -Infinity;
    for (const [, v] of points) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    const t0 = points[0][0], t1 = points[points.length - 1][0];
    const d = points.map(([t, v], i) =>
      (i ? "L" : "M") +
      (t1 === t0 ? (i / (points.length - 1)) * 198 + 1 : ((t - t0) / (t1 - t0)) * 198 + 1)
        .toFixed(1) +
      "," + (hi === lo ? 15 : 27 - ((v - lo) / (hi - lo)) * 24).toFixed(1)
    ).join("");
    svg.append(svgEl("path", {
      d,
      fill: "none",
      stroke: "#2563eb",
      "stroke-width": 1.5,
      "vector-effect": "non-scaling-stroke",
    }));
    return svg;
  }

  /**
   * A reject's detail for its table cell: whole, or cut at the last word boundary before
   * `max` characters with "…" (the cell's title has the full text).
   */
  function shorten(text: string, max = 160): string {
    if (text.length <= max) return text;
    const cut = text.lastIndexOf(" ", max);
    return text.slice(0, cut > max / 2 ? cut : max).trimEnd() + " …";
  }

  return { chart, sparkline, runs, shorten };
}

/** What the page's script finds as `globalThis.feedlineCharts`. */
export type StatusPageCharts = ReturnType<typeof statusPageCharts>;

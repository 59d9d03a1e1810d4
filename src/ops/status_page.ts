/**
 * The status page served at `/`: one self-contained HTML document (inline CSS and
 * JavaScript, no build step, nothing fetched from elsewhere, so it works offline and
 * inside `deno bundle`). It polls `/api/live` (in-process counters and their recent
 * history) every 2 s and the database endpoints (`/api/feeds`, `/api/rejects`,
 * `/api/devices`) every 5 s. Device data (topics, values, details) is untrusted: the
 * script only ever sets it with `textContent`, never as HTML.
 */

/** The page. */
export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>feedline status</title>
<style>
  :root { --bg: #f6f7f9; --card: #fff; --ink: #1d2330; --muted: #6b7385; --line: #e3e6ec;
          --ok: #1a7f37; --bad: #c62828; --stored: #2563eb; --rej: #d97706; --recv: #94a3b8; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
         background: var(--bg); color: var(--ink); }
  header { display: flex; align-items: center; gap: 12px; padding: 12px 20px;
           background: var(--card); border-bottom: 1px solid var(--line); }
  header h1 { font-size: 18px; margin: 0 12px 0 0; }
  .badge { padding: 2px 10px; border-radius: 999px; font-size: 12px; font-weight: 600;
           background: #eee; color: var(--muted); }
  .badge.ok { background: #dcf5e3; color: var(--ok); }
  .badge.bad { background: #fde2e2; color: var(--bad); }
  #updated { margin-left: auto; color: var(--muted); font-size: 12px; }
  #banner { display: none; padding: 8px 20px; background: #fde2e2; color: var(--bad); }
  main { padding: 16px 20px; display: grid; gap: 16px;
         grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); }
  section { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
            padding: 12px 16px; min-width: 0; }
  section.wide { grid-column: 1 / -1; }
  h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted);
       margin: 0 0 8px; }
  .tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(120px, 1fr)); gap: 8px; }
  .tile { border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; }
  .tile .v { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
  .tile .l { font-size: 12px; color: var(--muted); }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line);
           vertical-align: middle; }
  th { font-size: 12px; color: var(--muted); font-weight: 600; }
  td.mono, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px;
                   word-break: break-all; }
  .muted { color: var(--muted); }
  .legend span { margin-right: 12px; font-size: 12px; }
  .legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
              margin-right: 4px; vertical-align: -1px; }
  svg { display: block; width: 100%; }
  .reason { display: inline-block; padding: 1px 8px; border-radius: 4px; background: #fff4e5;
            color: #8a4b00; font-size: 12px; font-weight: 600; }
  .online { color: var(--ok); font-weight: 600; }
  .offline { color: var(--bad); font-weight: 600; }
  .empty { color: var(--muted); padding: 8px 0; }
  td.clip { max-width: 0; width: 40%; white-space: nowrap; overflow: hidden;
            text-overflow: ellipsis; }
  td.nowrap { white-space: nowrap; }
</style>
</head>
<body>
<header>
  <h1>feedline</h1>
  <span class="badge" id="ready-broker">broker</span>
  <span class="badge" id="ready-database">database</span>
  <span id="updated">loading…</span>
</header>
<div id="banner"></div>
<main>
  <section class="wide">
    <h2>Now</h2>
    <div class="tiles" id="tiles"></div>
  </section>
  <section class="wide">
    <h2>Ingest rate, messages per second (last 10 minutes)</h2>
    <div class="legend"><span><i style="background:var(--recv)"></i>received</span><span><i
      style="background:var(--stored)"></i>stored</span><span><i
      style="background:var(--rej)"></i>rejected</span></div>
    <svg id="rate-chart" viewBox="0 0 900 180" preserveAspectRatio="none" height="180"></svg>
  </section>
  <section>
    <h2>Queue depth and unacked</h2>
    <div class="legend"><span><i style="background:var(--stored)"></i>queued</span><span><i
      style="background:var(--rej)"></i>unacked</span></div>
    <svg id="queue-chart" viewBox="0 0 440 120" preserveAspectRatio="none" height="120"></svg>
  </section>
  <section>
    <h2>Batch duration, ms</h2>
    <svg id="batch-chart" viewBox="0 0 440 120" preserveAspectRatio="none" height="120"></svg>
  </section>
  <section class="wide">
    <h2>Feeds (most recently written)</h2>
    <table id="feeds">
      <thead><tr><th>user</th><th>device</th><th>feed</th><th>last value</th><th>at</th>
        <th style="width:220px">recent values</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section>
    <h2>Rejects by reason (since start)</h2>
    <table id="reject-counts"><tbody></tbody></table>
    <h2 style="margin-top:12px">Latest rejects (hover for the full text)</h2>
    <table id="rejects">
      <thead><tr><th>time</th><th>reason</th><th>topic</th><th>detail</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section>
    <h2>Devices</h2>
    <div class="tiles" id="device-counts"></div>
    <table id="devices" style="margin-top:8px">
      <thead><tr><th>device</th><th>status</th><th>last seen</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
<script>
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}
function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}
function fmt(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return Number.isInteger(n) ? String(n) : n.toFixed(n < 10 ? 2 : 1);
}
function bytes(n) { return (n / 1048576).toFixed(0) + " MB"; }
function time(iso) { return iso ? new Date(iso).toLocaleTimeString() : "–"; }
function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  return s < 60 ? s.toFixed(0) + " s ago" : s < 3600 ? (s / 60).toFixed(0) + " min ago"
    : (s / 3600).toFixed(1) + " h ago";
}
function replaceRows(tbody, rows, empty, cols) {
  tbody.replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colspan: cols, class: "empty" }, empty))]));
}

/** Line chart of several series over shared x (epoch ms). */
function chart(svg, xs, series) {
  const [w, h] = svg.getAttribute("viewBox").split(" ").slice(2).map(Number);
  const pad = { l: 40, r: 6, t: 8, b: 16 };
  svg.replaceChildren();
  let max = 0;
  for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
  max = max > 0 ? max * 1.1 : 1;
  const x0 = xs.length ? xs[0] : 0, x1 = xs.length ? xs[xs.length - 1] : 1;
  const sx = (x) => pad.l + (x1 === x0 ? 0 : ((x - x0) / (x1 - x0)) * (w - pad.l - pad.r));
  const sy = (v) => h - pad.b - (v / max) * (h - pad.t - pad.b);
  for (const f of [0, 0.5, 1]) {
    const y = sy(max * f);
    svg.append(svgEl("line", { x1: pad.l, x2: w - pad.r, y1: y, y2: y, stroke: "#e3e6ec" }));
    const label = svgEl("text", { x: pad.l - 4, y: y + 4, "text-anchor": "end",
      "font-size": 10, fill: "#6b7385" });
    label.textContent = fmt(max * f);
    svg.append(label);
  }
  for (const s of series) {
    let d = "";
    s.values.forEach((v, i) => {
      if (v === null) return;
      d += (d ? "L" : "M") + sx(xs[i]).toFixed(1) + "," + sy(v).toFixed(1);
    });
    if (d) svg.append(svgEl("path", { d, fill: "none", stroke: s.color, "stroke-width": 2,
      "vector-effect": "non-scaling-stroke" }));
  }
}

function sparkline(points) {
  const svg = svgEl("svg", { viewBox: "0 0 200 30", preserveAspectRatio: "none",
    height: 30, class: "spark" });
  if (points.length < 2) return svg;
  let lo = Infinity, hi = -Infinity;
  for (const [, v] of points) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const d = points.map(([t, v], i) => (i ? "L" : "M") +
    (t1 === t0 ? (i / (points.length - 1)) * 198 + 1 : ((t - t0) / (t1 - t0)) * 198 + 1)
      .toFixed(1) + "," + (hi === lo ? 15 : 27 - ((v - lo) / (hi - lo)) * 24).toFixed(1)).join("");
  svg.append(svgEl("path", { d, fill: "none", stroke: "#2563eb", "stroke-width": 1.5,
    "vector-effect": "non-scaling-stroke" }));
  return svg;
}

function badge(node, ok, name) {
  node.className = "badge " + (ok ? "ok" : "bad");
  node.textContent = name + (ok ? " up" : " down");
}

function rates(history, key) {
  return history.map((s, i) => i === 0 ? null
    : Math.max(0, (s[key] - history[i - 1][key]) / ((s.t - history[i - 1].t) / 1000)));
}

function renderLive(live) {
  badge($("ready-broker"), live.ready.broker, "broker");
  badge($("ready-database"), live.ready.database, "database");
  const h = live.history;
  const recv = rates(h, "received");
  const last = recv.length ? recv[recv.length - 1] : null;
  const tiles = [
    ["received/s", fmt(last), "rate-received"],
    ["received", fmt(live.totals.received), "total-received"],
    ["stored", fmt(live.totals.stored), "total-stored"],
    ["rejected", fmt(live.totals.rejected), "total-rejected"],
    ["dropped", fmt(live.totals.dropped), "total-dropped"],
    ["queued", fmt(live.queue.data + live.queue.status), "queued"],
    ["unacked", fmt(live.queue.unacked), "unacked"],
    ["oldest queued", fmt(live.queue.oldest_ms / 1000) + " s", "oldest"],
    ["batch mean", fmt(live.batch.mean_ms) + " ms", "batch-mean"],
    ["lag mean", fmt(live.batch.lag_mean_ms) + " ms", "lag-mean"],
    ["memory", bytes(live.memory_bytes), "memory"],
  ];
  $("tiles").replaceChildren(...tiles.map(([label, value, id]) =>
    el("div", { class: "tile", "data-tile": id }, el("div", { class: "v" }, value),
      el("div", { class: "l" }, label))));
  const xs = h.map((s) => s.t);
  chart($("rate-chart"), xs, [
    { values: recv, color: "#94a3b8" },
    { values: rates(h, "stored"), color: "#2563eb" },
    { values: rates(h, "rejected"), color: "#d97706" },
  ]);
  chart($("queue-chart"), xs, [
    { values: h.map((s) => s.queued), color: "#2563eb" },
    { values: h.map((s) => s.unacked), color: "#d97706" },
  ]);
  chart($("batch-chart"), xs, [{ values: h.map((s) => s.batch_ms), color: "#2563eb" }]);
  const counts = Object.entries(live.rejected_by_reason).filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1]);
  replaceRows($("reject-counts").tBodies[0], counts.map(([reason, n]) =>
    el("tr", { "data-reason": reason }, el("td", {}, el("span", { class: "reason" }, reason)),
      el("td", {}, fmt(n)))), "no rejects", 2);
  $("updated").textContent = "updated " + new Date(live.now).toLocaleTimeString() +
    " · up " + ago(new Date(live.started_at).toISOString()).replace(" ago", "");
}

function renderRejects(rows) {
  replaceRows($("rejects").tBodies[0], rows.slice(0, 10).map((r) =>
    el("tr", { "data-reason": r.reason }, el("td", { class: "nowrap" }, time(r.received_at)),
      el("td", {}, el("span", { class: "reason" }, r.reason)),
      el("td", { class: "mono clip", title: r.topic }, r.topic),
      el("td", { class: "clip", title: (r.detail || "") + (r.payload ? "\\npayload: " + r.payload : "") },
        r.detail || ""))),
    "nothing rejected", 4);
}

function renderDevices(d) {
  const online = d.counts.online || 0, offline = d.counts.offline || 0;
  const other = Object.entries(d.counts).filter(([s]) => s !== "online" && s !== "offline")
    .reduce((n, [, c]) => n + c, 0);
  $("device-counts").replaceChildren(
    el("div", { class: "tile", "data-tile": "online" }, el("div", { class: "v online" }, online),
      el("div", { class: "l" }, "online")),
    el("div", { class: "tile", "data-tile": "offline" },
      el("div", { class: "v offline" }, offline), el("div", { class: "l" }, "offline")),
    el("div", { class: "tile" }, el("div", { class: "v" }, other),
      el("div", { class: "l" }, "never reported")));
  replaceRows($("devices").tBodies[0], d.recent.map((r) =>
    el("tr", {}, el("td", { class: "mono" }, r.code),
      el("td", { class: r.status === "online" || r.status === "offline" ? r.status : "muted" },
        r.status), el("td", {}, ago(r.last_seen_at)))), "no devices", 3);
}

function renderFeeds(rows) {
  replaceRows($("feeds").tBodies[0], rows.map((f) => {
    const spark = el("td", {});
    spark.append(sparkline(f.points));
    return el("tr", { "data-feed": f.key },
      el("td", { class: "mono", title: f.user_id }, f.user_id.slice(0, 8)),
      el("td", { class: "mono" }, f.device ?? "–"),
      el("td", { class: "mono" }, f.key + (f.is_active ? "" : " (inactive)")),
      el("td", { class: "value" }, f.last_value ?? "–"),
      el("td", { class: "nowrap" }, time(f.last_value_at)), spark);
  }), "no feeds yet", 6);
}

async function getJson(path) {
  const res = await fetch(path, { cache: "no-store" });
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || path + ": HTTP " + res.status);
  return body;
}

const problems = new Map();
function showProblems() {
  const banner = $("banner");
  banner.textContent = [...problems.values()].join(" · ");
  banner.style.display = problems.size ? "block" : "none";
}
async function poll(name, path, render) {
  try {
    render(await getJson(path));
    problems.delete(name);
  } catch (error) {
    problems.set(name, name + ": " + error.message);
  }
  showProblems();
}

const pollLive = () => poll("live", "api/live", renderLive);
const pollDb = () => Promise.all([
  poll("feeds", "api/feeds", renderFeeds),
  poll("rejects", "api/rejects", renderRejects),
  poll("devices", "api/devices", renderDevices),
]);
pollLive();
pollDb();
setInterval(pollLive, 2000);
setInterval(pollDb, 5000);
</script>
</body>
</html>
`;

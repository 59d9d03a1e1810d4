/**
 * The status page served at `/`: one self-contained HTML document (inline CSS and
 * JavaScript, no build step, nothing fetched from elsewhere, so it works offline and
 * inside `deno bundle`). The script is `src/ops/status_page_script.ts`, type-checked and
 * linted like the rest, embedded here as its source. It polls `/api/live` (in-process counters and their recent
 * history) every 2 s and the database endpoints (`/api/feeds`, `/api/rejects`,
 * `/api/devices`, `/api/alerts`) every 5 s. Device data (topics, values, details) is untrusted: the
 * script only ever sets it with `textContent`, never as HTML.
 */

import { statusPageCharts } from "./status_page_charts.ts";
import { statusPageScript } from "./status_page_script.ts";

const SCRIPT = statusPageScript.toString();
const CHARTS = statusPageCharts.toString();
// The sources go into a <script> element as they are: they must not close that element.
if (/<\/script/i.test(SCRIPT + CHARTS)) throw new Error("status page scripts contain </script");

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
  .stale { color: var(--rej); font-weight: 600; }
  .alert { display: inline-block; padding: 1px 8px; border-radius: 4px; background: #fde2e2;
           color: var(--bad); font-size: 12px; font-weight: 600; }
  .empty { color: var(--muted); padding: 8px 0; }
  td.clip { max-width: 0; width: 40%; white-space: nowrap; overflow: hidden;
            text-overflow: ellipsis; }
  td.nowrap { white-space: nowrap; }
  td.detail { width: 40%; overflow-wrap: anywhere; }
  tr.earlier td { color: var(--muted); }
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
    <h2>Messages per second (last 10 minutes)</h2>
    <div class="legend"><span><i style="background:var(--recv)"></i>messages received</span><span><i
      style="background:var(--stored)"></i>messages stored</span><span><i
      style="background:var(--rej)"></i>messages rejected</span></div>
    <svg id="rate-chart" viewBox="0 0 900 180" preserveAspectRatio="none" height="180"></svg>
  </section>
  <section class="wide">
    <h2>Readings stored per second (a bulk message carries several readings)</h2>
    <div class="legend"><span><i style="background:var(--stored)"></i>readings stored</span></div>
    <svg id="readings-chart" viewBox="0 0 900 120" preserveAspectRatio="none" height="120"></svg>
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
    <h2>Open alerts (threshold crossed, or silent longer than max_silence)</h2>
    <div class="tiles" id="alert-counts"></div>
    <table id="alerts" style="margin-top:8px">
      <thead><tr><th>kind</th><th>user</th><th>device</th><th>feed</th><th>since</th>
        <th>threshold</th><th>peak</th></tr></thead>
      <tbody></tbody>
    </table>
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
    <h2>Rejects by reason (since this start)</h2>
    <table id="reject-counts"><tbody></tbody></table>
    <h2 style="margin-top:12px">Latest rejects, stored (grey: before this start; hover for the
      full text)</h2>
    <table id="rejects">
      <thead><tr><th>time</th><th>reason</th><th>topic</th><th>detail</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section>
    <h2>Devices (online but silent for 5 min: stale)</h2>
    <div class="tiles" id="device-counts"></div>
    <table id="devices" style="margin-top:8px">
      <thead><tr><th>device</th><th>status</th><th>last seen</th><th>stored / rejected, 1 h</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
<script>
"use strict";
globalThis.feedlineCharts = (${CHARTS})();
(${SCRIPT})();
</script>
</body>
</html>
`;

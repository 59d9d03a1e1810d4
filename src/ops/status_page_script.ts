/// <reference lib="dom" />
/**
 * The status page's script, as TypeScript that `deno lint` and `deno check` read. It runs
 * in the browser, not here: `src/ops/status_page.ts` embeds the source of
 * {@linkcode statusPageScript} (`Function.prototype.toString`, after Deno stripped the
 * types) in the page as one inline script, so there is no build step. The function must
 * therefore use nothing from outside its own body, not even from this module: only its
 * own declarations and browser globals. Device data (topics, values, details) is
 * untrusted and only ever set with `textContent`, never as HTML.
 */

// Types only: erased before the function's source is embedded.
import type { StatusPageCharts } from "./status_page_charts.ts";
import type { DeviceIngest } from "./status_queries.ts";

/** The page's behaviour: polls the APIs and renders. Runs in the browser only. */
export function statusPageScript(): void {
  /** The answer of `/api/live` (src/ops/operations.ts), as far as the page reads it. */
  interface LiveSample {
    t: number;
    /** Messages. */
    received: number;
    /** Readings. */
    stored: number;
    /** Messages. */
    messages_stored: number;
    rejected: number;
    queued: number;
    unacked: number;
    batch_ms: number | null;
  }
  interface Live {
    now: number;
    started_at: number;
    ready: { broker: boolean; database: boolean };
    totals: {
      received: number;
      stored: number;
      messages_stored: number;
      rejected: number;
      dropped: number;
    };
    rejected_by_reason: Record<string, number>;
    queue: { data: number; status: number; unacked: number; oldest_ms: number };
    batch: { mean_ms: number | null; lag_mean_ms: number | null };
    memory_bytes: number;
    history: LiveSample[];
  }
  interface RejectRow {
    received_at: string | null;
    reason: string;
    topic: string;
    detail: string | null;
    payload: string | null;
  }
  interface DeviceRow extends DeviceIngest {
    code: string;
    status: string;
    last_seen_at: string | null;
    stale: boolean;
  }
  interface Devices {
    counts: Record<string, number>;
    stale: number;
    recent: DeviceRow[];
  }
  interface FeedRow {
    key: string;
    user_id: string;
    device: string | null;
    is_active: boolean;
    last_value: string | null;
    last_value_at: string | null;
    points: [number, number][];
  }
  interface AlertRow {
    kind: string;
    user_id: string;
    device: string | null;
    key: string;
    since: string | null;
    threshold: number | null;
    peak: number | null;
  }
  interface Alerts {
    counts: Record<string, number>;
    open: AlertRow[];
  }
  // Drawn by src/ops/status_page_charts.ts, which runs first in the page.
  const { chart, sparkline, shorten } =
    (globalThis as unknown as { feedlineCharts: StatusPageCharts }).feedlineCharts;
  const $ = (id: string): HTMLElement => document.getElementById(id)!;
  const table = (id: string) => ($(id) as HTMLTableElement).tBodies[0];

  function el(tag: string, attrs: Record<string, string> | null, ...children: unknown[]) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
    return node;
  }
  function fmt(n: number | null | undefined): string {
    if (n === null || n === undefined || Number.isNaN(n)) return "–";
    if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return Number.isInteger(n) ? String(n) : n.toFixed(n < 10 ? 2 : 1);
  }
  function bytes(n: number): string {
    return (n / 1048576).toFixed(0) + " MB";
  }
  function time(iso: string | null): string {
    return iso ? new Date(iso).toLocaleTimeString() : "–";
  }
  function ago(iso: string | null): string {
    if (!iso) return "never";
    const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    return s < 60
      ? s.toFixed(0) + " s ago"
      : s < 3600
      ? (s / 60).toFixed(0) + " min ago"
      : (s / 3600).toFixed(1) + " h ago";
  }
  function replaceRows(tbody: HTMLTableSectionElement, rows: Node[], empty: string, cols: number) {
    tbody.replaceChildren(
      ...(rows.length
        ? rows
        : [el("tr", {}, el("td", { colspan: String(cols), class: "empty" }, empty))]),
    );
  }

  function badge(node: HTMLElement, ok: boolean, name: string) {
    node.className = "badge " + (ok ? "ok" : "bad");
    node.textContent = name + (ok ? " up" : " down");
  }

  function rates(
    history: LiveSample[],
    key: "received" | "stored" | "messages_stored" | "rejected",
  ) {
    return history.map((s, i) =>
      i === 0
        ? null
        : Math.max(0, (s[key] - history[i - 1][key]) / ((s.t - history[i - 1].t) / 1000))
    );
  }

  // When this serve started: rejects stored before it are in the table, not in the counts.
  let startedAt: number | null = null;

  function renderLive(live: Live) {
    startedAt = live.started_at;
    badge($("ready-broker"), live.ready.broker, "broker");
    badge($("ready-database"), live.ready.database, "database");
    const h = live.history;
    const recv = rates(h, "received");
    const readings = rates(h, "stored");
    const last = (xs: (number | null)[]) => xs.length ? xs[xs.length - 1] : null;
    // Messages and readings are labelled apart: a bulk message carries several readings,
    // so "received 403 / stored 810" is no contradiction.
    const tiles: [string, string, string][] = [
      ["messages received/s", fmt(last(recv)), "rate-received"],
      ["messages received", fmt(live.totals.received), "total-received"],
      ["messages stored", fmt(live.totals.messages_stored), "messages-stored"],
      ["messages rejected", fmt(live.totals.rejected), "total-rejected"],
      ["messages dropped", fmt(live.totals.dropped), "total-dropped"],
      ["readings stored/s", fmt(last(readings)), "rate-readings"],
      ["readings stored", fmt(live.totals.stored), "readings-stored"],
      ["queued", fmt(live.queue.data + live.queue.status), "queued"],
      ["unacked", fmt(live.queue.unacked), "unacked"],
      ["oldest queued", fmt(live.queue.oldest_ms / 1000) + " s", "oldest"],
      ["batch mean", fmt(live.batch.mean_ms) + " ms", "batch-mean"],
      ["lag mean", fmt(live.batch.lag_mean_ms) + " ms", "lag-mean"],
      ["memory", bytes(live.memory_bytes), "memory"],
    ];
    $("tiles").replaceChildren(...tiles.map(([label, value, id]) =>
      el(
        "div",
        { class: "tile", "data-tile": id },
        el("div", { class: "v" }, value),
        el("div", { class: "l" }, label),
      )
    ));
    const xs = h.map((s) => s.t);
    chart($("rate-chart"), xs, [
      { values: recv, color: "#94a3b8" },
      { values: rates(h, "messages_stored"), color: "#2563eb" },
      { values: rates(h, "rejected"), color: "#d97706" },
    ]);
    chart($("readings-chart"), xs, [{ values: readings, color: "#2563eb" }]);
    chart($("queue-chart"), xs, [
      { values: h.map((s) => s.queued), color: "#2563eb" },
      { values: h.map((s) => s.unacked), color: "#d97706" },
    ]);
    chart($("batch-chart"), xs, [{ values: h.map((s) => s.batch_ms), color: "#2563eb" }]);
    const counts = Object.entries(live.rejected_by_reason).filter(([, n]) => n > 0)
      .sort((a, b) => b[1] - a[1]);
    replaceRows(
      table("reject-counts"),
      counts.map(([reason, n]) =>
        el(
          "tr",
          { "data-reason": reason },
          el("td", {}, el("span", { class: "reason" }, reason)),
          el("td", {}, fmt(n)),
        )
      ),
      "none since this start (" + new Date(live.started_at).toLocaleTimeString() + ")",
      2,
    );
    $("updated").textContent = "updated " + new Date(live.now).toLocaleTimeString() +
      " · up " + ago(new Date(live.started_at).toISOString()).replace(" ago", "");
  }

  function renderRejects(rows: RejectRow[]) {
    replaceRows(
      table("rejects"),
      rows.slice(0, 10).map((r) => {
        const earlier = startedAt !== null && r.received_at !== null &&
          new Date(r.received_at).getTime() < startedAt;
        return el(
          "tr",
          { "data-reason": r.reason, ...(earlier ? { class: "earlier", "data-earlier": "" } : {}) },
          el(
            "td",
            { class: "nowrap", title: earlier ? "before this start" : "" },
            time(r.received_at),
          ),
          el("td", {}, el("span", { class: "reason" }, r.reason)),
          el("td", { class: "mono clip", title: r.topic }, r.topic),
          el("td", {
            class: "detail",
            title: (r.detail || "") + (r.payload ? "\npayload: " + r.payload : ""),
          }, shorten(r.detail || "")),
        );
      }),
      "nothing rejected",
      4,
    );
  }

  function renderDevices(d: Devices) {
    // Stale: online, but silent for longer than the server's threshold (stale_after_s).
    const stale = d.stale || 0;
    const online = (d.counts.online || 0) - stale, offline = d.counts.offline || 0;
    const other = Object.entries(d.counts).filter(([s]) => s !== "online" && s !== "offline")
      .reduce((n, [, c]) => n + c, 0);
    $("device-counts").replaceChildren(
      el(
        "div",
        { class: "tile", "data-tile": "online" },
        el("div", { class: "v online" }, online),
        el("div", { class: "l" }, "online"),
      ),
      el(
        "div",
        { class: "tile", "data-tile": "stale" },
        el("div", { class: "v stale" }, stale),
        el("div", { class: "l" }, "stale (online, silent)"),
      ),
      el(
        "div",
        { class: "tile", "data-tile": "offline" },
        el("div", { class: "v offline" }, offline),
        el("div", { class: "l" }, "offline"),
      ),
      el(
        "div",
        { class: "tile" },
        el("div", { class: "v" }, other),
        el("div", { class: "l" }, "never reported"),
      ),
    );
    replaceRows(
      table("devices"),
      d.recent.map((r) =>
        el(
          "tr",
          { "data-device": r.code },
          el("td", { class: "mono" }, r.code),
          r.stale ? el("td", { class: "stale" }, "stale (online, silent)") : el(
            "td",
            { class: r.status === "online" || r.status === "offline" ? r.status : "muted" },
            r.status,
          ),
          el("td", {}, ago(r.last_seen_at)),
          el("td", { title: r.last_reject?.reason ?? "" }, `${r.stored_1h} / ${r.rejected_1h}`),
        )
      ),
      "no devices",
      4,
    );
  }

  function renderAlerts(a: Alerts) {
    $("alert-counts").replaceChildren(
      ...["above", "below", "stale"].map((kind) =>
        el(
          "div",
          { class: "tile", "data-tile": "alerts-" + kind },
          el("div", { class: "v" }, a.counts[kind] || 0),
          el("div", { class: "l" }, kind),
        )
      ),
    );
    replaceRows(
      table("alerts"),
      a.open.map((r) =>
        el(
          "tr",
          { "data-alert": r.kind, "data-feed": r.key },
          el("td", {}, el("span", { class: "alert" }, r.kind)),
          el("td", { class: "mono", title: r.user_id }, r.user_id.slice(0, 8)),
          el("td", { class: "mono" }, r.device ?? "–"),
          el("td", { class: "mono" }, r.key),
          el("td", { class: "nowrap", title: r.since ?? "" }, ago(r.since)),
          el("td", {}, fmt(r.threshold)),
          el("td", { class: "peak" }, fmt(r.peak)),
        )
      ),
      "no open alerts",
      7,
    );
  }

  function renderFeeds(rows: FeedRow[]) {
    replaceRows(
      table("feeds"),
      rows.map((f) => {
        const spark = el("td", {});
        spark.append(sparkline(f.points));
        return el(
          "tr",
          { "data-feed": f.key },
          el("td", { class: "mono", title: f.user_id }, f.user_id.slice(0, 8)),
          el("td", { class: "mono" }, f.device ?? "–"),
          el("td", { class: "mono" }, f.key + (f.is_active ? "" : " (inactive)")),
          el("td", { class: "value" }, f.last_value ?? "–"),
          el("td", { class: "nowrap" }, time(f.last_value_at)),
          spark,
        );
      }),
      "no feeds yet",
      6,
    );
  }

  async function getJson(path: string) {
    const res = await fetch(path, { cache: "no-store" });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error || path + ": HTTP " + res.status);
    return body;
  }

  const problems = new Map<string, string>();
  function showProblems() {
    const banner = $("banner");
    banner.textContent = [...problems.values()].join(" · ");
    banner.style.display = problems.size ? "block" : "none";
  }
  async function poll<T>(name: string, path: string, render: (body: T) => void) {
    try {
      render(await getJson(path) as T);
      problems.delete(name);
    } catch (error) {
      problems.set(name, name + ": " + (error as Error).message);
    }
    showProblems();
  }

  const pollLive = () => poll("live", "api/live", renderLive);
  const pollDb = () =>
    Promise.all([
      poll("feeds", "api/feeds", renderFeeds),
      poll("rejects", "api/rejects", renderRejects),
      poll("devices", "api/devices", renderDevices),
      poll("alerts", "api/alerts", renderAlerts),
    ]);
  pollLive();
  pollDb();
  setInterval(pollLive, 2000);
  setInterval(pollDb, 5000);
}

/**
 * `main.ts serve` as the benchmark runs it: its own process, as in production, with
 * `--http` on a free port for /readyz and /metrics. One serve process can be measured
 * over several passes of published messages: the serve phase runs one, the fleet phase
 * (bench/fleet_phase.ts) a warm-up pass and a measured pass in the same process, so the
 * second finds the feed cache the first filled.
 *
 * A pass reports stored messages/s from first publish to last commit, publish→commit
 * latency from the payload's timestamp and PostgreSQL's commit visibility
 * (bench/commit_clock.ts), lost messages, peak RSS, and CPU per message of serve, of
 * PostgreSQL, of the broker and of the publisher.
 */
import postgres from "postgres";
import { freePort } from "../test/support/broker.ts";
import {
  type Child,
  cpuSeconds,
  peakRssBytes,
  postgresCpuSeconds,
  rssBytes,
  runPublisher,
  spawnDeno,
} from "./children.ts";
import { type CommitClock, startCommitClock } from "./commit_clock.ts";
import { type PublisherConfig, type PublisherReport, readingsPerMessage } from "./publisher.ts";
import type { PhaseResult } from "./rows.ts";
import { fmtRate, metric } from "./text.ts";

/** How to run serve. */
export interface ServeOptions {
  /** The main.ts to run (this checkout's, or another's for before/after comparisons). */
  main: string;
  mqttUrl: string;
  dbUrl: string;
  /** A connection to `dbUrl`: counts what a pass stored and computes its latency. */
  sql: postgres.Sql;
  qos: 0 | 1;
  format: PublisherConfig["format"];
  serveArgs: string[];
  /** Directory for serve's V8 CPU profile; none when undefined. */
  cpuProfDir?: string;
  /** serve's `--v8-flags` (its heap limits, docs/performance.md "Memory budget"); none when empty. */
  v8Flags?: string;
  /** A pass ends when serve processed nothing for this long. */
  idleMs: number;
  /** The broker's pid, for its CPU per message; null when the broker is not ours. */
  brokerPid: number | null;
  log(msg: string): void;
}

/** What one pass measured: a summary row without its name. */
export type PassResult = Omit<PhaseResult, "name" | "phase" | "inflight">;

/** A running serve. */
export interface ServeProcess {
  pid: number;
  /**
   * Publishes `pc` and measures until serve has processed every message (or stalled for
   * `idleMs`). `feed_values` and `ingest_rejects` must be empty when it starts.
   */
  measurePass(pc: PublisherConfig): Promise<PassResult>;
  /** VmRSS in bytes after `pauseMs` with nothing published. */
  idleRssBytes(pauseMs: number): Promise<number>;
  stop(): Promise<void>;
}

/** Counters of serve's /metrics a pass is measured by (deltas over the pass). */
interface Counters {
  processed: number;
  dropped: number;
  skipped: number;
  batches: number;
  /** Feeds the cache did not hold (looked up in the database), and its clears (sql/017). */
  feedMisses: number;
  cacheClears: number;
}

const READY_TIMEOUT_MS = 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function countersOf(text: string): Counters {
  return {
    processed: metric(text, "feedline_messages_processed_total"),
    dropped: metric(text, "feedline_messages_dropped_total"),
    skipped: metric(text, "feedline_readings_skipped_total"),
    batches: metric(text, "feedline_batches_total"),
    // NaN (printed "?") from a serve that predates these metrics (`--serve-main`).
    feedMisses: text.includes("feedline_lookup_cache_misses_total")
      ? metric(text, 'feedline_lookup_cache_misses_total\\{cache="feed"\\}')
      : NaN,
    cacheClears: text.includes("feedline_lookup_cache_checks_total")
      ? metric(text, 'feedline_lookup_cache_checks_total\\{result="cleared"\\}')
      : NaN,
  };
}

function minus(a: Counters, b: Counters): Counters {
  return {
    processed: a.processed - b.processed,
    dropped: a.dropped - b.dropped,
    skipped: a.skipped - b.skipped,
    batches: a.batches - b.batches,
    feedMisses: a.feedMisses - b.feedMisses,
    cacheClears: a.cacheClears - b.cacheClears,
  };
}

function serveFlags(opts: ServeOptions, httpPort: number): string[] {
  return [
    ...["--mqtt-url", opts.mqttUrl, "--database-url", opts.dbUrl],
    ...["--http", `127.0.0.1:${httpPort}`, "--qos", String(opts.qos)],
    ...["--client-id", `feedline-bench-${crypto.randomUUID().slice(0, 8)}`],
    ...["--log-level", "warn", "--log-format", "json"],
    ...opts.serveArgs,
  ];
}

async function waitUntilReady(baseUrl: string): Promise<void> {
  const readyBy = Date.now() + READY_TIMEOUT_MS;
  while (true) {
    const ok = await fetch(`${baseUrl}/readyz`).then(async (r) => {
      await r.body?.cancel();
      return r.ok;
    }, () => false);
    if (ok) return;
    if (Date.now() > readyBy) throw new Error("serve did not become ready within 60 s");
    await sleep(100);
  }
}

/** Starts serve and waits until it is ready (subscribed, database answering). */
export async function startServe(opts: ServeOptions): Promise<ServeProcess> {
  const httpPort = await freePort();
  const denoFlags = ["run", "-A"];
  if (opts.cpuProfDir) denoFlags.push("--cpu-prof", `--cpu-prof-dir=${opts.cpuProfDir}`);
  if (opts.v8Flags) denoFlags.push(`--v8-flags=${opts.v8Flags}`);
  const child = spawnDeno([...denoFlags, opts.main, "serve", ...serveFlags(opts, httpPort)], {
    echo: true,
  });
  const baseUrl = `http://127.0.0.1:${httpPort}`;
  try {
    await waitUntilReady(baseUrl);
  } catch (error) {
    await child.stop("SIGTERM", 10_000);
    throw error;
  }
  let stopped = false;
  return {
    pid: child.pid,
    measurePass: (pc) => measurePass(opts, child, baseUrl, pc),
    async idleRssBytes(pauseMs) {
      await sleep(pauseMs);
      return (await rssBytes(child.pid)) ?? 0;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      const status = await child.stop("SIGTERM");
      if (!status.success) opts.log(`serve exited with code ${status.code}`);
    },
  };
}

/** Polls /metrics every 100 ms: counters since `base`, and the highest gauges seen. */
function watchMetrics(baseUrl: string, base: Counters) {
  const seen = { counters: minus(base, base), maxUnacked: 0, maxQueued: 0, maxRss: 0 };
  let lastChange = performance.now();
  let polling = true;
  const poll = async () => {
    const text = await fetch(`${baseUrl}/metrics`).then((r) => r.text());
    const now = minus(countersOf(text), base);
    if (now.processed !== seen.counters.processed || now.dropped !== seen.counters.dropped) {
      lastChange = performance.now();
    }
    seen.counters = now;
    seen.maxUnacked = Math.max(seen.maxUnacked, metric(text, "feedline_unacked_messages"));
    seen.maxQueued = Math.max(seen.maxQueued, metric(text, "feedline_queue_depth_data"));
    seen.maxRss = Math.max(seen.maxRss, metric(text, "feedline_process_resident_memory_bytes"));
  };
  const poller = (async () => {
    while (polling) {
      await poll().catch(() => {});
      await sleep(100);
    }
  })();
  return {
    seen,
    /** Waits until `published` messages were processed or dropped, or nothing moved. */
    async until(published: number, idleMs: number): Promise<void> {
      lastChange = performance.now();
      while (
        seen.counters.processed + seen.counters.dropped < published &&
        performance.now() - lastChange < idleMs
      ) {
        await sleep(50);
      }
    },
    async stop(): Promise<void> {
      polling = false;
      await poller;
      await poll().catch(() => {});
    },
  };
}

/** CPU seconds so far of serve, PostgreSQL and the broker. */
async function cpuReading(pid: number, brokerPid: number | null) {
  return {
    serve: await cpuSeconds(pid),
    postgres: await postgresCpuSeconds(),
    broker: brokerPid === null ? null : await cpuSeconds(brokerPid),
  };
}

/** µs per item of a CPU difference, one decimal; undefined when either reading is missing. */
function usPer(end: number | null, start: number | null, n: number): number | undefined {
  if (end === null || start === null || n <= 0) return undefined;
  return Number((((end - start) * 1e6) / n).toFixed(1));
}

/** p50/p99 publish→commit over every stored row, and the last commit time seen. */
async function commitLatency(sql: postgres.Sql, clock: CommitClock) {
  const xids = await sql<{ xid: string; n: number }[]>`
    select xmin::text as xid, count(*)::int as n from feed_values group by 1`;
  const xs: number[] = [];
  const ts: number[] = [];
  let lastCommitMs = 0;
  let unseen = 0;
  for (const { xid, n } of xids) {
    // null: the poller stopped before it saw this commit; left out of the latency.
    const at = clock.commitTimeOf(Number(xid));
    if (at === null) {
      unseen += n;
      continue;
    }
    xs.push(Number(xid));
    ts.push(at);
    lastCommitMs = Math.max(lastCommitMs, at);
  }
  const [lat] = await sql<{ p50: number | null; p99: number | null }[]>`
    select percentile_cont(0.5) within group (order by ms) as p50,
           percentile_cont(0.99) within group (order by ms) as p99
    from (select c.t - extract(epoch from v.created_at) * 1000 as ms
          from unnest(${xs}::int8[], ${ts}::float8[]) as c(x, t)
          join feed_values v on v.xmin::text::int8 = c.x) l`;
  return { p50: lat.p50, p99: lat.p99, lastCommitMs, unseen };
}

async function measurePass(
  opts: ServeOptions,
  serve: Child,
  baseUrl: string,
  pc: PublisherConfig,
): Promise<PassResult> {
  const { sql, log } = opts;
  log(
    `feedline serve: ${pc.count} messages, QoS ${pc.qos}` +
      (pc.rate > 0 ? `, ${fmtRate(pc.rate)}/s` : ", flat out") +
      (opts.serveArgs.length ? ` (${opts.serveArgs.join(" ")})` : ""),
  );
  const base = countersOf(await fetch(`${baseUrl}/metrics`).then((r) => r.text()));
  const cpuAtStart = await cpuReading(serve.pid, opts.brokerPid);
  const clockSql = postgres(opts.dbUrl, { max: 1, onnotice: () => {} });
  const clock = startCommitClock(clockSql);
  const watch = watchMetrics(baseUrl, base);
  let pub: PublisherReport;
  try {
    pub = await runPublisher(pc);
    log(`published ${pub.published} in ${((pub.lastMs - pub.firstMs) / 1000).toFixed(2)} s`);
    await watch.until(pub.published, opts.idleMs);
  } finally {
    await watch.stop();
    await clock.stop();
    await clockSql.end();
  }
  const peak = await peakRssBytes(serve.pid);
  const cpuAtEnd = await cpuReading(serve.pid, opts.brokerPid);
  const { counters, maxUnacked, maxQueued, maxRss } = watch.seen;

  const [{ stored }] = await sql<{ stored: number }[]>`
    select count(*)::int as stored from feed_values`;
  const [{ rejected }] = await sql<{ rejected: number }[]>`
    select count(*)::int as rejected from ingest_rejects`;
  const lat = await commitLatency(sql, clock);
  const seconds = (lat.lastCommitMs - pub.firstMs) / 1000;
  // Rows are readings: a message of the zigbee2mqtt format carries several.
  const perMessage = readingsPerMessage(pc);
  return {
    messages: stored,
    seconds,
    perSecond: stored / seconds,
    p50Ms: lat.p50 ?? undefined,
    p99Ms: lat.p99 ?? undefined,
    latencyFrom: opts.format === "plain" ? "receive→commit" : "publish→commit",
    lost: pub.published * perMessage - stored - rejected - counters.skipped -
      counters.dropped * perMessage,
    dropped: counters.dropped,
    rejected,
    mostQueued: maxQueued,
    peakRssMb: (peak ?? maxRss) / 2 ** 20,
    cpuUsPerMessage: usPer(cpuAtEnd.serve, cpuAtStart.serve, counters.processed),
    // PostgreSQL per row stored (it includes the commit clock's polling, a few % of it);
    // the broker and the publisher per message published.
    postgresCpuUsPerRow: usPer(cpuAtEnd.postgres, cpuAtStart.postgres, stored),
    brokerCpuUsPerMessage: usPer(cpuAtEnd.broker, cpuAtStart.broker, pub.published),
    publisherCpuUsPerMessage: Number((pub.cpuUs / pub.published).toFixed(1)),
    extra: {
      published: pub.published,
      publishSeconds: (pub.lastMs - pub.firstMs) / 1000,
      publishRate: pc.rate,
      skipped: counters.skipped,
      batches: counters.batches,
      feedCacheMisses: counters.feedMisses,
      feedCacheClears: counters.cacheClears,
      meanBatch: counters.batches ? Math.round(counters.processed / counters.batches) : 0,
      maxUnackedSeen: maxUnacked,
      commitClockIntervalMs: Number(clock.meanIntervalMs().toFixed(2)),
      rowsWithUnseenCommit: lat.unseen,
      // Per row stored: per reading for a message of many (the Sparkplug phase).
      serveCpuUsPerRow: usPer(cpuAtEnd.serve, cpuAtStart.serve, stored),
      serveArgs: opts.serveArgs,
      readingsPerMessage: perMessage,
    },
  };
}

/**
 * `deno task bench`: the end-to-end benchmark (docs/performance.md). In one run, on one
 * private Mosquitto and one fresh PostgreSQL database, it measures:
 *
 * - broker limit: a subscriber that only counts (bench/counter.ts);
 * - database limit: the same rows by multi-row `unnest` insert, one transaction per
 *   batch, no MQTT;
 * - processor: feedline's decode + processBatch on the same messages, no MQTT;
 * - serve: `main.ts serve` as its own process, as in production; stored messages/s from
 *   first publish to last commit, publish→commit latency from the payload's timestamp
 *   and PostgreSQL's commit visibility (bench/commit_clock.ts), lost messages, peak RSS.
 *
 * The publisher (bench/publisher.ts) is its own process too. Prints a table, writes JSON
 * to bench/results/.
 */
import process from "node:process";
import postgres from "postgres";
import { z } from "zod";
import { decode, type DecodeOptions } from "../src/core/decode.ts";
import { FeedlineError } from "../src/errors.ts";
import { FeedCache } from "../src/ingest/feed_cache.ts";
import type { Pending } from "../src/core/message.ts";
import { applyMigrations } from "../src/db/migrate.ts";
import { formatOptionsHelp, option, resolveOptions, zs } from "../src/cli/options.ts";
import { processBatch } from "../src/ingest/processor.ts";
import { compileTopics } from "../src/core/topics.ts";
import { freePort, startMosquitto } from "../test/support/broker.ts";
import { type Child, cpuSeconds, peakRssBytes, postgresCpuSeconds, spawnDeno } from "./children.ts";
import { startCommitClock } from "./commit_clock.ts";
import { buildFleet, registerFleet } from "./fleet.ts";
import type { CounterConfig, CounterReport } from "./counter.ts";
import { type PublisherConfig, type PublisherReport, wallMs } from "./publisher.ts";
import { probeWindow, type WindowProbe } from "./window.ts";
import { printScale, scalePhase, type ScaleResult } from "./scale.ts";
import { holdPhase, type HoldResult, printHold } from "./hold.ts";

/** Options of the benchmark. */
export const benchOptions = {
  count: option({
    flag: "count",
    schema: zs.int(1).default(200_000),
    defaultText: "200000",
    doc: "Messages to publish in each MQTT phase (and rows in the database phases).",
  }),
  qos: option({
    flag: "qos",
    schema: z.enum(["0", "1"]).default("1").transform((v) => Number(v) as 0 | 1),
    defaultText: "1",
    doc: "QoS of publishes and subscriptions.",
  }),
  rate: option({
    flag: "rate",
    schema: z.string().default("0").refine(
      (v) => /^\d+(\.\d+)?%?$/.test(v),
      "a number of messages/s, or N% of the broker limit measured in this run",
    ),
    defaultText: "0 (flat out)",
    doc: "Publish rate: messages/s, or N% of this run's broker limit (e.g. 50%).",
  }),
  connections: option({
    flag: "connections",
    schema: zs.int(1, 64).default(1),
    defaultText: "1",
    doc: "Publisher connections.",
  }),
  pubWindow: option({
    flag: "pub-window",
    schema: zs.int(1, 100_000).default(1000),
    defaultText: "1000",
    doc: "Unacknowledged publishes per publisher connection (flat out).",
  }),
  format: option({
    flag: "format",
    schema: z.enum(["json", "plain"]).default("json"),
    defaultText: "json",
    doc: 'Payload: json = {"value": n, "ts": publish time in µs}; plain = the number only.',
  }),
  users: option({
    flag: "users",
    schema: zs.int(1).default(100),
    defaultText: "100",
    doc: "Users.",
  }),
  devices: option({
    flag: "devices",
    schema: zs.int(1).default(10),
    defaultText: "10",
    doc: "Devices per user.",
  }),
  feeds: option({
    flag: "feeds",
    schema: zs.int(1).default(5),
    defaultText: "5",
    doc: "Feeds per device.",
  }),
  batchSize: option({
    flag: "batch-size",
    schema: zs.int(1, 100_000).default(5000),
    defaultText: "5000",
    doc: "Rows per transaction in the database and processor phases (serve's default).",
  }),
  brokerInflight: option({
    flag: "broker-inflight",
    schema: zs.int(0, 65535).default(20),
    defaultText: "20",
    doc: "Mosquitto max_inflight_messages (its default is 20; 0 = no limit).",
  }),
  mqttUrl: option({
    flag: "mqtt-url",
    schema: zs.url(["mqtt:"]).optional(),
    defaultText: "a private Mosquitto on a free port",
    doc: "Use this broker instead of starting one (its settings are then yours to report).",
  }),
  databaseUrl: option({
    flag: "database-url",
    env: "BENCH_DATABASE_URL",
    schema: zs.url(["postgres:", "postgresql:"]).default("postgres://root@127.0.0.1:5432/postgres"),
    defaultText: "postgres://root@127.0.0.1:5432/postgres",
    doc: "Server on which a fresh feedline_bench_* database is created (dropped afterwards).",
  }),
  phases: option({
    flag: "phases",
    schema: z.string().default("window,broker,db,processor,serve").refine(
      (v) =>
        v.split(",").every((p) =>
          ["window", "broker", "db", "processor", "serve", "scale", "hold"].includes(p)
        ),
      "a comma list of window, broker, db, processor, serve, scale, hold",
    ),
    defaultText: "window,broker,db,processor,serve",
    doc: "Which measurements to run. `scale` (not in the default): 1, 2 and 3 serve " +
      "instances in one shared group, stored rate and CPU by process (bench/scale.ts). " +
      "`hold` (not in the default): VmRSS per message held by serve, with `--count` " +
      "messages published while `feed_values` is locked (bench/hold.ts).",
  }),
  serveArgs: option({
    flag: "serve-args",
    schema: z.string().default(""),
    defaultText: "none",
    doc: 'Extra flags for serve, space-separated (e.g. "--connections 4 --ack-window 200").',
  }),
  serveMain: option({
    flag: "serve-main",
    schema: z.string().optional(),
    defaultText: "this checkout's main.ts",
    doc: "main.ts to run as serve: another checkout's, for before/after comparisons.",
  }),
  cpuProf: option({
    flag: "cpu-prof",
    schema: zs.bool().default(false),
    defaultText: "off",
    doc: "Run serve with --cpu-prof; the profile goes to bench/results/prof/.",
    boolean: true,
  }),
  idleMs: option({
    flag: "idle-ms",
    schema: zs.int(100).default(15_000),
    defaultText: "15000",
    doc: "Give up waiting for a phase when nothing progressed for this long.",
  }),
  keepDb: option({
    flag: "keep-db",
    schema: zs.bool().default(false),
    defaultText: "off",
    doc: "Keep the benchmark database for inspection.",
    boolean: true,
  }),
  label: option({
    flag: "label",
    schema: z.string().default(""),
    defaultText: "none",
    doc: "A note stored with the results (e.g. the change being measured).",
  }),
};

/** The benchmark's configuration. */
export type BenchConfig = ReturnType<typeof parseBenchArgs>;

/** Parses the benchmark's flags. Pure. */
export function parseBenchArgs(args: string[], env: Record<string, string | undefined>) {
  const { values, positionals } = resolveOptions(benchOptions, args, env, "bench");
  if (positionals.length > 0) {
    throw new FeedlineError("USAGE", `bench takes no arguments (got "${positionals[0]}")`);
  }
  return { ...values, phaseList: values.phases.split(",") };
}

const help = `deno task bench — end-to-end benchmark of feedline against Mosquitto and PostgreSQL

Usage: deno task bench [options]

Options:
${formatOptionsHelp(benchOptions)}
`;

/** One line of the results table. */
interface PhaseResult {
  name: string;
  messages: number;
  seconds: number;
  perSecond: number;
  p50Ms?: number;
  p99Ms?: number;
  latencyFrom?: string;
  lost?: number;
  dropped?: number;
  rejected?: number;
  peakRssMb?: number;
  /** CPU time of the measured process per message, in µs (steady under other load). */
  cpuUsPerMessage?: number;
  extra?: Record<string, unknown>;
}

const RESULTS_DIR = new URL("./results/", import.meta.url);
const OWN_MAIN_TS = new URL("../main.ts", import.meta.url).pathname;

function log(msg: string): void {
  console.error(`[bench] ${msg}`);
}

async function machineInfo() {
  const cpu = await Deno.readTextFile("/proc/cpuinfo").then(
    (t) => /^model name\s*:\s*(.+)$/m.exec(t)?.[1] ?? "unknown",
    () => "unknown",
  );
  const mosquitto = await new Deno.Command("/usr/sbin/mosquitto", { args: ["-h"] }).output()
    .then((o) => /mosquitto version (\S+)/.exec(new TextDecoder().decode(o.stdout))?.[1])
    .catch(() => undefined);
  return {
    cpu,
    cores: navigator.hardwareConcurrency,
    memoryGb: Math.round(Deno.systemMemoryInfo().total / 2 ** 30),
    os: `${Deno.build.os} ${Deno.osRelease()}`,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    mosquitto,
    // Other work on the machine skews every number; kept with the results.
    loadAvgAtStart: Deno.loadavg(),
  };
}

/** Mosquitto settings of the private broker; see docs/performance.md. */
function mosquittoConfig(cfg: BenchConfig): string {
  return [
    // The in-flight window per subscriber: what bounds QoS 1 when acks wait for commits.
    `max_inflight_messages ${cfg.brokerInflight}`,
    // No limit on messages queued per client beyond the window, so the broker never
    // drops: any loss we count is feedline's.
    "max_queued_messages 0",
    "max_queued_bytes 0",
    "persistence false",
  ].join("\n");
}

async function main(args: string[]): Promise<void> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(help);
    return;
  }
  const cfg = parseBenchArgs(args, Deno.env.toObject());
  const machine = await machineInfo();
  const runId = new Date().toISOString().replace(/[:.]/g, "-");
  const tmp = await Deno.makeTempDir({ prefix: "feedline-bench-" });
  const cleanups: (() => Promise<unknown>)[] = [() => Deno.remove(tmp, { recursive: true })];
  const results: PhaseResult[] = [];
  try {
    let mqttUrl = cfg.mqttUrl;
    let brokerPid: number | null = null;
    if (!mqttUrl) {
      const broker = await startMosquitto({ config: mosquittoConfig(cfg) });
      cleanups.push(() => broker.close());
      mqttUrl = broker.url;
      brokerPid = broker.pid;
      log(
        `mosquitto ${machine.mosquitto} on ${mqttUrl} (max_inflight_messages ${cfg.brokerInflight})`,
      );
    }

    const admin = postgres(cfg.databaseUrl, { max: 1, onnotice: () => {} });
    const dbName = `feedline_bench_${crypto.randomUUID().replaceAll("-", "").slice(0, 10)}`;
    await admin`create database ${admin(dbName)}`;
    const dbUrl = new URL(cfg.databaseUrl);
    dbUrl.pathname = `/${dbName}`;
    const sql = postgres(dbUrl.href, { max: 2, onnotice: () => {} });
    cleanups.push(async () => {
      await sql.end();
      if (!cfg.keepDb) await admin`drop database if exists ${admin(dbName)} with (force)`;
      else log(`kept database ${dbUrl.href}`);
      await admin.end();
    });
    await applyMigrations(sql);
    const fleet = buildFleet(cfg);
    const feedIds = await registerFleet(sql, fleet);
    log(`database ${dbName}: ${fleet.length} feeds registered`);
    const topicsFile = `${tmp}/topics.json`;
    await Deno.writeTextFile(topicsFile, JSON.stringify(fleet.map((f) => f.topic)));

    const publisherConfig = (rate: number): PublisherConfig => ({
      url: mqttUrl!,
      topicsFile,
      count: cfg.count,
      qos: cfg.qos,
      connections: cfg.connections,
      rate,
      format: cfg.format,
      window: cfg.pubWindow,
    });

    let window: WindowProbe | null = null;
    if (cfg.phaseList.includes("window")) {
      // serve advertises --ack-window as its Receive Maximum (default 20).
      window = await probeWindow(mqttUrl, 5, 20);
      log(
        `effective window (MQTT 5, Receive Maximum 20): ${window.withoutAcks} without acks, ` +
          `${window.withBurstAcks} at most outstanding with acks sent in bursts`,
      );
    }
    let brokerLimit: number | null = null;
    if (cfg.phaseList.includes("broker")) {
      const r = await brokerPhase(cfg, mqttUrl, publisherConfig(0));
      results.push(r);
      brokerLimit = r.perSecond;
    }
    if (cfg.phaseList.includes("db")) {
      results.push(await databasePhase(cfg, sql, feedIds));
      await resetData(sql);
    }
    if (cfg.phaseList.includes("processor")) {
      results.push(await processorPhase(cfg, sql, fleet.map((f) => f.topic)));
      await resetData(sql);
    }
    const rate = resolveRate(cfg.rate, brokerLimit);
    if (cfg.phaseList.includes("serve")) {
      results.push(
        await servePhase(cfg, mqttUrl, dbUrl.href, sql, publisherConfig(rate), runId, brokerPid),
      );
    }

    let hold: HoldResult | null = null;
    if (cfg.phaseList.includes("hold")) {
      if (cfg.phaseList.includes("serve")) await resetData(sql);
      hold = await holdPhase({
        mqttUrl,
        dbUrl: dbUrl.href,
        sql,
        pc: publisherConfig(rate),
        serveMain: cfg.serveMain ?? OWN_MAIN_TS,
        serveArgs: cfg.serveArgs.trim() === "" ? [] : cfg.serveArgs.trim().split(/\s+/),
        idleMs: cfg.idleMs,
        runPublisher,
        log,
      });
    }

    let scale: ScaleResult[] | null = null;
    if (cfg.phaseList.includes("scale")) {
      if (cfg.phaseList.includes("serve")) await resetData(sql);
      scale = await scalePhase({
        counts: [1, 2, 3],
        mqttUrl,
        dbUrl: dbUrl.href,
        sql,
        pc: publisherConfig(rate),
        serveArgs: cfg.serveArgs.trim() === "" ? [] : cfg.serveArgs.trim().split(/\s+/),
        idleMs: cfg.idleMs,
        reset: () => resetData(sql),
      });
    }

    const limits = results.filter((r) => r.name === "broker limit" || r.name === "database limit");
    const serve = results.find((r) => r.name.startsWith("feedline serve"));
    const slower = limits.length > 0
      ? limits.reduce((a, b) => (a.perSecond <= b.perSecond ? a : b))
      : null;
    if (results.length > 0) printTable(results);
    if (scale) printScale(scale);
    if (hold) printHold(hold);
    console.log(
      `load average at start ${machine.loadAvgAtStart.join(" ")}, at end ${
        Deno.loadavg().join(" ")
      }`,
    );
    const ratio = serve && slower ? serve.perSecond / slower.perSecond : null;
    if (serve && slower) {
      console.log(
        `\nfeedline serve = ${(ratio! * 100).toFixed(1)}% of the slower limit (${slower.name}, ` +
          `${fmtRate(slower.perSecond)}/s)` +
          (rate > 0 ? `; publish rate was capped at ${fmtRate(rate)}/s` : ""),
      );
    }
    await Deno.mkdir(RESULTS_DIR, { recursive: true });
    const file = new URL(`${runId}-qos${cfg.qos}-n${cfg.count}.json`, RESULTS_DIR);
    const { phaseList: _, ...config } = cfg;
    await Deno.writeTextFile(
      file,
      JSON.stringify(
        {
          runId,
          label: cfg.label,
          config,
          publishRate: rate,
          machine,
          mosquittoConfig: cfg.mqttUrl ? null : mosquittoConfig(cfg),
          window,
          results,
          scale,
          hold,
          ratioToSlowerLimit: ratio,
        },
        null,
        2,
      ) + "\n",
    );
    console.log(`results: ${file.pathname}`);
  } finally {
    for (const c of cleanups.reverse()) await c().catch((e) => log(`cleanup: ${e.message}`));
  }
}

function resolveRate(rate: string, brokerLimit: number | null): number {
  if (!rate.endsWith("%")) return Number(rate);
  if (brokerLimit === null) {
    throw new FeedlineError("USAGE", "--rate N% needs the broker phase (see --phases)");
  }
  return Math.round((brokerLimit * Number(rate.slice(0, -1))) / 100);
}

async function resetData(sql: postgres.Sql): Promise<void> {
  await sql`truncate feed_values, ingest_rejects`;
  await sql`update feeds set last_value = null, last_value_at = null`;
  // Fresh statistics, so the planner sees the empty table as the next phase starts.
  await sql`vacuum analyze feed_values`;
}

async function runPublisher(pc: PublisherConfig): Promise<PublisherReport> {
  const child = spawnDeno([
    "run",
    "-A",
    new URL("./publisher.ts", import.meta.url).pathname,
    JSON.stringify(pc),
  ]);
  const line = await child.waitForLine((l) => l.startsWith("{"));
  await child.process.status;
  return JSON.parse(line);
}

async function brokerPhase(
  cfg: BenchConfig,
  mqttUrl: string,
  pc: PublisherConfig,
): Promise<PhaseResult> {
  log(`broker limit: ${cfg.count} messages, QoS ${cfg.qos}`);
  const cc: CounterConfig = {
    url: mqttUrl,
    filter: "+/+/feeds/+",
    qos: cfg.qos,
    count: cfg.count,
    idleMs: cfg.idleMs,
  };
  const counter = spawnDeno([
    "run",
    "-A",
    new URL("./counter.ts", import.meta.url).pathname,
    JSON.stringify(cc),
  ]);
  try {
    await counter.waitForLine((l) => l === "ready", 30_000);
    const pub = await runPublisher(pc);
    const report: CounterReport = JSON.parse(await counter.waitForLine((l) => l.startsWith("{")));
    const seconds = (report.lastMs - pub.firstMs) / 1000;
    return {
      name: "broker limit",
      messages: report.received,
      seconds,
      perSecond: report.received / seconds,
      lost: pub.published - report.received,
      cpuUsPerMessage: report.cpuUs / Math.max(1, report.received),
      extra: { publishSeconds: (pub.lastMs - pub.firstMs) / 1000 },
    };
  } finally {
    await counter.stop("SIGTERM", 2000);
  }
}

async function databasePhase(
  cfg: BenchConfig,
  sql: postgres.Sql,
  feedIds: number[],
): Promise<PhaseResult> {
  log(`database limit: ${cfg.count} rows, ${cfg.batchSize} per transaction`);
  const base = Date.now() * 1000;
  const pgCpuAtStart = await postgresCpuSeconds();
  const started = performance.now();
  for (let start = 0; start < cfg.count; start += cfg.batchSize) {
    const n = Math.min(cfg.batchSize, cfg.count - start);
    const f = new Array<number>(n);
    const v = new Array<number>(n);
    const c = new Array<number>(n);
    for (let k = 0; k < n; k++) {
      const i = start + k;
      f[k] = feedIds[i % feedIds.length];
      v[k] = i;
      c[k] = base + i;
    }
    // The statement src/ingest/processor.ts uses, without anything else around it.
    await sql.begin((tx) =>
      tx`
      insert into feed_values (feed_id, value, value_text, created_at, received_at)
      select f, v, null, to_timestamp(0) + c * interval '1 microsecond',
             to_timestamp(0) + c * interval '1 microsecond'
      from unnest(${f}::int8[], ${v}::float8[], ${c}::int8[]) as x(f, v, c)
      on conflict do nothing`
    );
  }
  const seconds = (performance.now() - started) / 1000;
  const pgCpu = (await postgresCpuSeconds()) - pgCpuAtStart;
  const [{ n }] = await sql<{ n: number }[]>`select count(*)::int as n from feed_values`;
  return {
    name: "database limit",
    messages: n,
    seconds,
    perSecond: n / seconds,
    // PostgreSQL's CPU, not ours: the figure serve's transaction is compared with.
    extra: { postgresCpuUsPerRow: Number(((pgCpu * 1e6) / n).toFixed(1)) },
  };
}

async function processorPhase(
  cfg: BenchConfig,
  sql: postgres.Sql,
  topics: string[],
): Promise<PhaseResult> {
  log(`processor (decode + processBatch, no MQTT): ${cfg.count} messages`);
  const encoder = new TextEncoder();
  const opts: DecodeOptions = {
    router: compileTopics(),
    maxPayloadBytes: 65536,
    maxTextLength: 255,
    maxFutureSkewMs: 300_000,
  };
  const feedCache = new FeedCache();
  let lastUs = 0;
  const cpuStart = process.cpuUsage();
  const started = performance.now();
  let stored = 0;
  for (let start = 0; start < cfg.count; start += cfg.batchSize) {
    const n = Math.min(cfg.batchSize, cfg.count - start);
    const batch: Pending[] = new Array(n);
    for (let k = 0; k < n; k++) {
      const i = start + k;
      const us = Math.max(lastUs + 1, Math.floor(wallMs() * 1000));
      lastUs = us;
      const payload = cfg.format === "json" ? `{"value":${i},"ts":${us}}` : String(i);
      const inbound = {
        topic: topics[i % topics.length],
        payload: encoder.encode(payload),
        qos: cfg.qos,
        retain: false,
        receivedAtUs: us,
      };
      batch[k] = { inbound, decoded: decode(inbound, opts) };
    }
    stored += (await processBatch(sql, batch, { feedCache })).stored;
  }
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  return {
    name: "processor (no MQTT)",
    messages: stored,
    seconds,
    perSecond: stored / seconds,
    lost: cfg.count - stored,
    cpuUsPerMessage: (cpu.user + cpu.system) / cfg.count,
  };
}

/** Sums every sample of `name` in Prometheus text. */
function metric(text: string, name: string): number {
  let sum = 0;
  const re = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "gm");
  for (const m of text.matchAll(re)) sum += Number(m[1]);
  return sum;
}

async function servePhase(
  cfg: BenchConfig,
  mqttUrl: string,
  dbUrl: string,
  sql: postgres.Sql,
  pc: PublisherConfig,
  runId: string,
  brokerPid: number | null,
): Promise<PhaseResult> {
  const httpPort = await freePort();
  const extra = cfg.serveArgs.trim() === "" ? [] : cfg.serveArgs.trim().split(/\s+/);
  const denoFlags = ["run", "-A"];
  if (cfg.cpuProf) {
    const dir = new URL(`prof/${runId}/`, RESULTS_DIR).pathname;
    await Deno.mkdir(dir, { recursive: true });
    denoFlags.push("--cpu-prof", `--cpu-prof-dir=${dir}`);
  }
  const serveFlags = [
    "--mqtt-url",
    mqttUrl,
    "--database-url",
    dbUrl,
    "--http",
    `127.0.0.1:${httpPort}`,
    "--qos",
    String(cfg.qos),
    "--client-id",
    `feedline-bench-${crypto.randomUUID().slice(0, 8)}`,
    "--log-level",
    "warn",
    "--log-format",
    "json",
    ...extra,
  ];
  log(
    `feedline serve: ${cfg.count} messages, QoS ${cfg.qos}` +
      (pc.rate > 0 ? `, ${fmtRate(pc.rate)}/s` : ", flat out") +
      (extra.length ? ` (${extra.join(" ")})` : ""),
  );
  const serve: Child = spawnDeno([
    ...denoFlags,
    cfg.serveMain ?? OWN_MAIN_TS,
    "serve",
    ...serveFlags,
  ], {
    echo: true,
  });
  const metricsUrl = `http://127.0.0.1:${httpPort}`;
  let stopped = false;
  try {
    const readyBy = Date.now() + 60_000;
    while (true) {
      const ok = await fetch(`${metricsUrl}/readyz`).then(async (r) => {
        await r.body?.cancel();
        return r.ok;
      }, () => false);
      if (ok) break;
      if (Date.now() > readyBy) throw new Error("serve did not become ready within 60 s");
      await new Promise((r) => setTimeout(r, 100));
    }

    const cpuAtStart = await cpuSeconds(serve.pid);
    const pgCpuAtStart = await postgresCpuSeconds();
    const brokerCpuAtStart = brokerPid === null ? null : await cpuSeconds(brokerPid);
    const clockSql = postgres(dbUrl, { max: 1, onnotice: () => {} });
    const clock = startCommitClock(clockSql);
    let maxUnacked = 0;
    let maxQueued = 0;
    let maxRssGauge = 0;
    let last = { processed: 0, dropped: 0, stored: 0, rejected: 0, skipped: 0, batches: 0 };
    let lastChange = performance.now();
    let polling = true;
    const poll = async () => {
      const text = await fetch(`${metricsUrl}/metrics`).then((r) => r.text());
      const now = {
        processed: metric(text, "feedline_messages_processed_total"),
        dropped: metric(text, "feedline_messages_dropped_total"),
        stored: metric(text, "feedline_readings_stored_total"),
        rejected: metric(text, "feedline_rejects_total"),
        skipped: metric(text, "feedline_readings_skipped_total"),
        batches: metric(text, "feedline_batches_total"),
      };
      maxUnacked = Math.max(maxUnacked, metric(text, "feedline_unacked_messages"));
      maxQueued = Math.max(maxQueued, metric(text, "feedline_queue_depth_data"));
      maxRssGauge = Math.max(maxRssGauge, metric(text, "feedline_process_resident_memory_bytes"));
      if (now.processed !== last.processed || now.dropped !== last.dropped) {
        lastChange = performance.now();
      }
      last = now;
    };
    const poller = (async () => {
      while (polling) {
        await poll().catch(() => {});
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    let pub: PublisherReport;
    try {
      pub = await runPublisher(pc);
      log(`published ${pub.published} in ${((pub.lastMs - pub.firstMs) / 1000).toFixed(2)} s`);
      lastChange = performance.now();
      while (
        last.processed + last.dropped < pub.published &&
        performance.now() - lastChange < cfg.idleMs
      ) {
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      polling = false;
      await poller;
      await poll().catch(() => {});
      await clock.stop();
      await clockSql.end();
    }
    const peak = await peakRssBytes(serve.pid);
    const cpuAtEnd = await cpuSeconds(serve.pid);
    const pgCpuAtEnd = await postgresCpuSeconds();
    const brokerCpuAtEnd = brokerPid === null ? null : await cpuSeconds(brokerPid);
    const status = await serve.stop("SIGTERM");
    stopped = true;
    if (!status.success) log(`serve exited with code ${status.code}`);

    const [{ stored }] = await sql<{ stored: number }[]>`
      select count(*)::int as stored from feed_values`;
    const [{ rejected }] = await sql<{ rejected: number }[]>`
      select count(*)::int as rejected from ingest_rejects`;
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
    const seconds = (lastCommitMs - pub.firstMs) / 1000;
    const skipped = last.skipped;
    const cpuUsPerMessage = cpuAtStart !== null && cpuAtEnd !== null && last.processed > 0
      ? ((cpuAtEnd - cpuAtStart) * 1e6) / last.processed
      : null;
    return {
      name: `feedline serve`,
      messages: stored,
      seconds,
      perSecond: stored / seconds,
      p50Ms: lat.p50 ?? undefined,
      p99Ms: lat.p99 ?? undefined,
      latencyFrom: cfg.format === "json" ? "publish→commit" : "receive→commit",
      lost: pub.published - stored - rejected - skipped - last.dropped,
      dropped: last.dropped,
      rejected,
      peakRssMb: peak !== null ? peak / 2 ** 20 : maxRssGauge / 2 ** 20,
      cpuUsPerMessage: cpuUsPerMessage ?? undefined,
      extra: {
        published: pub.published,
        publishSeconds: (pub.lastMs - pub.firstMs) / 1000,
        publishRate: pc.rate,
        skipped,
        batches: last.batches,
        meanBatch: last.batches ? Math.round(last.processed / last.batches) : 0,
        maxUnackedSeen: maxUnacked,
        maxQueuedSeen: maxQueued,
        commitClockIntervalMs: Number(clock.meanIntervalMs().toFixed(2)),
        rowsWithUnseenCommit: unseen,
        serveArgs: extra,
        // CPU of the other processes of the run, per message published (PostgreSQL: per
        // row stored; it includes the commit clock's polling, a few % of it).
        postgresCpuUsPerRow: stored > 0
          ? Number((((pgCpuAtEnd - pgCpuAtStart) * 1e6) / stored).toFixed(1))
          : null,
        brokerCpuUsPerMessage: brokerCpuAtStart !== null && brokerCpuAtEnd !== null
          ? Number((((brokerCpuAtEnd - brokerCpuAtStart) * 1e6) / pub.published).toFixed(1))
          : null,
        publisherCpuUsPerMessage: Number((pub.cpuUs / pub.published).toFixed(1)),
      },
    };
  } finally {
    if (!stopped) await serve.stop("SIGTERM", 10_000);
  }
}

function fmtRate(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function printTable(results: PhaseResult[]): void {
  const head = [
    "measurement",
    "messages",
    "seconds",
    "msgs/s",
    "p50 ms",
    "p99 ms",
    "lost",
    "dropped",
    "peak RSS MB",
    "CPU µs/msg",
  ];
  const rows = results.map((r) => [
    r.name,
    String(r.messages),
    r.seconds.toFixed(2),
    fmtRate(r.perSecond),
    r.p50Ms !== undefined ? r.p50Ms.toFixed(0) : "",
    r.p99Ms !== undefined ? r.p99Ms.toFixed(0) : "",
    r.lost !== undefined ? String(r.lost) : "",
    r.dropped !== undefined ? String(r.dropped) : "",
    r.peakRssMb !== undefined ? r.peakRssMb.toFixed(0) : "",
    r.cpuUsPerMessage !== undefined ? r.cpuUsPerMessage.toFixed(1) : "",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    "| " +
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ") + " |";
  console.log("\n" + line(head));
  console.log(
    "|" +
      widths.map((w, i) => (i === 0 ? "-" : "") + "-".repeat(w) + (i === 0 ? "-" : ":")).join("|") +
      "|",
  );
  for (const r of rows) console.log(line(r));
  const db = results.find((r) => r.name === "database limit");
  if (db?.extra) {
    console.log(`\ndatabase limit: PostgreSQL ${db.extra.postgresCpuUsPerRow} CPU µs/row`);
  }
  const serve = results.find((r) => r.name === "feedline serve");
  if (serve?.extra) {
    const e = serve.extra;
    console.log(
      `\nserve: ${e.batches} batches (mean ${e.meanBatch} messages), most unacked seen ` +
        `${e.maxUnackedSeen}, most queued seen ${e.maxQueuedSeen}, ${serve.rejected} rejected, ${e.skipped} skipped, latency ${serve.latencyFrom} ` +
        `(commit clock every ${e.commitClockIntervalMs} ms)`,
    );
    console.log(
      `CPU µs: serve ${serve.cpuUsPerMessage?.toFixed(1)}/msg, PostgreSQL ` +
        `${e.postgresCpuUsPerRow}/row, broker ${e.brokerCpuUsPerMessage}/msg, publisher ` +
        `${e.publisherCpuUsPerMessage}/msg`,
    );
  }
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (error) {
    console.error(`bench: ${(error as Error).message}`);
    if (!(error instanceof FeedlineError)) console.error((error as Error).stack);
    Deno.exitCode = 1;
  }
}

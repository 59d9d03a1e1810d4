/**
 * `deno task bench`: the end-to-end benchmark (docs/performance.md). In one run, on one
 * fresh PostgreSQL database, it measures:
 *
 * - database limit: the same rows by multi-row `unnest` insert, one transaction per
 *   batch, no MQTT;
 * - processor: feedline's decode + processBatch on the same messages, no MQTT;
 * - commit: the cost of a verified commit per batch (bench/commit_cost.ts);
 *
 * and once per `--broker-inflight` setting, each on a private Mosquitto of its own:
 *
 * - window: the in-flight window the broker gives a subscriber that defers acks;
 * - broker limit: a subscriber that only counts (bench/counter.ts);
 * - serve: `main.ts serve` as its own process, as in production (bench/serve_process.ts);
 * - sparkplug: the same, fed Sparkplug B DDATA of 100 metrics (bench/sparkplug_phase.ts);
 * - hold, scale, fleet when asked for (bench/hold.ts, bench/scale.ts,
 *   bench/fleet_phase.ts).
 *
 * The publisher (bench/publisher.ts) is its own process too. Prints one summary table and
 * issue 15's targets (bench/summary.ts), writes JSON to bench/results/.
 */
import { prepareRollupFolds } from "../src/db/rollup_folds.ts";
import process from "node:process";
import postgres from "postgres";
import { z } from "zod";
import { decode, type DecodeOptions } from "../src/core/decode.ts";
import { FeedlineError } from "../src/errors.ts";
import { FeedCache } from "../src/ingest/feed_cache.ts";
import type { DecodedMessage } from "../src/core/message.ts";
import { formatOptionsHelp, option, resolveOptions, zs } from "../src/cli/options.ts";
import { processBatch } from "../src/ingest/processor.ts";
import { compileTopics } from "../src/core/topics.ts";
import { startMosquitto } from "../test/support/broker.ts";
import { cpuSeconds, postgresCpuSeconds, runPublisher, spawnDeno } from "./children.ts";
import { type BenchDatabase, createBenchDatabase, type FleetSize, resetData } from "./fleet.ts";
import { createFleetDatabase, type FleetDatabase, fleetPhase } from "./fleet_phase.ts";
import { fleetOfSize, fleetRowName, fleetRuns, printCurve } from "./fleet_curve.ts";
import type { CounterConfig, CounterReport } from "./counter.ts";
import { type PublisherConfig, wallMs } from "./publisher.ts";
import { probeWindow } from "./window.ts";
import { type CommitCost, commitCostPhase, printCommitCost } from "./commit_cost.ts";
import { printScale, scalePhase, type ScaleResult } from "./scale.ts";
import {
  createMappingsFleet,
  type MappingsFleet,
  mappingsPhase,
  printMappingsComparison,
} from "./mappings_phase.ts";
import { holdPhase, type HoldResult, printHold } from "./hold.ts";
import { type PassResult, type ServeOptions, startServe } from "./serve_process.ts";
import type { Inflight, Load, PhaseResult, SummaryRow } from "./rows.ts";
import {
  evaluateTargets,
  holdRow,
  isFlatOut,
  phaseName,
  printMarkdownTable,
  printNotes,
  printSummary,
  printTargets,
  scaleRows,
  type WindowOnSetting,
} from "./summary.ts";
import { memoryTargetLines, serveV8Flags } from "./memory_target.ts";
import { cpuTargetLines, shareTargetLines } from "./cpu_target.ts";
import { METRICS, sparkplugPhase } from "./sparkplug_phase.ts";
import {
  BENCH_ROLLUP_FOLD_WIDTHS,
  BENCH_ROLLUP_INTERVALS,
  BENCH_ROLLUP_WIDTHS,
  printRollupsCost,
  rollupServeArgs,
} from "./rollups_phase.ts";
import { type AlertsCount, printAlertsCost, withAlertRules } from "./alerts_phase.ts";

/** Every phase --phases accepts, in the order they run. */
const ALL_PHASES = [
  "db",
  "processor",
  "commit",
  "window",
  "broker",
  "serve",
  "rollups",
  "alerts",
  "sparkplug",
  "mappings",
  "hold",
  "scale",
  "fleet",
];
/** Phases that need a broker (all but the database-only ones): once per --broker-inflight. */
const MQTT_PHASES = ALL_PHASES.filter((p) => p !== "db" && p !== "processor" && p !== "commit");

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
  fleetUsers: option({
    flag: "fleet-users",
    schema: zs.int(1).default(2000),
    defaultText: "2000",
    doc: "Users of the fleet phase's large fleet (in a second database).",
  }),
  fleetDevices: option({
    flag: "fleet-devices",
    schema: zs.int(1).default(50),
    defaultText: "50",
    doc: "Devices per user of the large fleet.",
  }),
  fleetFeeds: option({
    flag: "fleet-feeds",
    schema: zs.int(1).default(10),
    defaultText: "10 (2,000 × 50 × 10 = 1,000,000 feeds)",
    doc: "Feeds per device of the large fleet.",
  }),
  fleetSizes: option({
    flag: "fleet-sizes",
    schema: z.string().default("").transform((v) => v === "" ? [] : v.split(",")).pipe(
      z.array(zs.int(500)),
    ),
    defaultText: "none: the --fleet-users × --fleet-devices × --fleet-feeds fleet",
    doc: "The fleet scaling curve: a comma list of fleet sizes in feeds (e.g. " +
      "5000,100000,1000000), each users × 50 devices × 10 feeds, one fleet phase per size " +
      "(bench/fleet_curve.ts).",
  }),
  fleetTuned: option({
    flag: "fleet-tuned",
    schema: zs.bool().default(false),
    defaultText: "off",
    doc: "Run each fleet also with a feed cache sized for it (--feed-cache-size 1.1 × feeds; " +
      "before sql/017 also --feed-cache-ttl-ms 600000).",
    boolean: true,
  }),
  batchSize: option({
    flag: "batch-size",
    schema: zs.int(1, 100_000).default(5000),
    defaultText: "5000",
    doc: "Rows per transaction in the database and processor phases (serve's default).",
  }),
  brokerInflight: option({
    flag: "broker-inflight",
    schema: z.string().default("20,0").transform((v) => v.split(",")).pipe(
      z.array(zs.int(0, 65535)).min(1).refine(
        (list) => new Set(list).size === list.length,
        "a list naming each setting once",
      ),
    ),
    defaultText: "20,0",
    doc: "Mosquitto max_inflight_messages, a comma list: every MQTT phase runs once per " +
      "setting, each on a private Mosquitto of its own (Mosquitto's default is 20; 0 = no " +
      "limit).",
  }),
  mqttUrl: option({
    flag: "mqtt-url",
    schema: zs.url(["mqtt:"]).optional(),
    defaultText: "a private Mosquitto on a free port",
    doc: "Use this broker instead of starting one: the MQTT phases run once, their " +
      "in-flight setting reported as unknown (it is yours to report).",
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
    schema: z.string().default("window,broker,db,processor,commit,serve,sparkplug,mappings").refine(
      (v) => v.split(",").every((p) => ALL_PHASES.includes(p)),
      `a comma list of ${ALL_PHASES.join(", ")}`,
    ),
    defaultText: "all but rollups, alerts, hold, scale, fleet",
    doc:
      "Which measurements to run. `sparkplug`: serve fed Sparkplug B DDATA of 100 metrics by alias, --count readings in all (bench/sparkplug_phase.ts). `mappings`: serve --mappings with 50 rules and a Zigbee2MQTT-like fleet (bench/mappings_phase.ts). `rollups` (not in the default): serve --rollups 1m,1h,1d beside the `serve` phase, throughput and PostgreSQL CPU per row (bench/rollups_phase.ts). `alerts` (not in the default): serve with every feed's alert rules on (threshold_mode alert, crossed by the last tenth of the values, and a max_silence) beside the `serve` phase, and the alerts it opened (bench/alerts_phase.ts). `commit`: the cost of a verified commit per batch of 1,000 readings against `sql.begin` alone (bench/commit_cost.ts). `scale` (not in the default): 1, 2 and 3 serve instances in one shared group, stored rate and CPU by process (bench/scale.ts). `hold` (not in the default): VmRSS per message held by serve, with `--count` messages published while `feed_values` is locked (bench/hold.ts). `fleet` (not in the default): serve against the `--fleet-*` fleet, a warm-up pass over every feed then `--count` messages measured warm; feed-cache memory per feed (bench/fleet_phase.ts).",
  }),
  serveArgs: option({
    flag: "serve-args",
    schema: z.string().default(""),
    defaultText: "none",
    doc: 'Extra flags for serve, space-separated (e.g. "--connections 4 --ack-window 200").',
  }),
  payloadPad: option({
    flag: "payload-pad",
    schema: zs.int(0, 10_000_000).default(0),
    defaultText: "0",
    doc:
      "json: pad each message with this many bytes (e.g. 60000 for the 60 KB readings of issue 26).",
  }),
  serveV8Flags: option({
    flag: "serve-v8-flags",
    schema: z.string().default("budget"),
    defaultText: "budget",
    doc:
      "serve's --v8-flags: `budget` sets its heap limits from its bounds as docs/performance.md " +
      '("Memory budget") says, `none` leaves V8\'s defaults, anything else is passed as is.',
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
  return {
    ...values,
    phaseList: values.phases.split(","),
    serveArgList: values.serveArgs.trim() === "" ? [] : values.serveArgs.trim().split(/\s+/),
  };
}

const help = `deno task bench — end-to-end benchmark of feedline against Mosquitto and PostgreSQL

Usage: deno task bench [options]

Options:
${formatOptionsHelp(benchOptions)}
`;

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

/** Mosquitto settings of a private broker; see docs/performance.md. */
function mosquittoConfig(inflight: number): string {
  return [
    // The in-flight window per subscriber: what bounds QoS 1 when acks wait for commits.
    `max_inflight_messages ${inflight}`,
    // No limit on messages queued per client beyond the window, so the broker never
    // drops: any loss we count is feedline's.
    "max_queued_messages 0",
    "max_queued_bytes 0",
    "persistence false",
  ].join("\n");
}

/** The broker of one setting: a private Mosquitto, or the --mqtt-url one (not ours). */
interface Broker {
  url: string;
  pid: number | null;
  close(): Promise<void>;
}

async function openBroker(cfg: BenchConfig, inflight: Inflight): Promise<Broker> {
  if (typeof inflight !== "number") {
    return { url: cfg.mqttUrl!, pid: null, close: () => Promise.resolve() };
  }
  const broker = await startMosquitto({ config: mosquittoConfig(inflight) });
  log(`mosquitto on ${broker.url} (max_inflight_messages ${inflight})`);
  return { url: broker.url, pid: broker.pid, close: () => broker.close() };
}

/** Everything one run carries from phase to phase, and what it collected. */
interface Run {
  cfg: BenchConfig;
  runId: string;
  tmp: string;
  admin: postgres.Sql;
  db: BenchDatabase;
  topicsFile: string;
  cleanups: (() => Promise<unknown>)[];
  rows: SummaryRow[];
  windows: WindowOnSetting[];
  publishRates: { inflight: Inflight; rate: number }[];
  holds: (HoldResult & { inflight: Inflight })[];
  alerts: AlertsCount[];
  scales: { inflight: Inflight; results: ScaleResult[] }[];
  /** The fleet phase's database of the last size used, kept for the next run of it. */
  fleet: { key: string; db: FleetDatabase } | null;
  /** The mappings phase's fleet, registered in the benchmark database on first use. */
  mappings: MappingsFleet | null;
  commit: (CommitCost & Load) | null;
}

/** Runs `phase` and notes the load average before and after it. */
async function withLoad<T>(phase: () => Promise<T>): Promise<T & Load> {
  const loadBefore = Deno.loadavg();
  const result = await phase();
  return { ...result, loadBefore, loadAfter: Deno.loadavg() };
}

/** Names a measured result and adds it to the run; returns the row. */
function addRow(
  run: Run,
  phase: string,
  base: string,
  inflight: Inflight,
  result: PassResult,
  brokerLimit: number | null = null,
): PhaseResult {
  const row: PhaseResult = { name: phaseName(base, inflight), phase, inflight, ...result };
  if (brokerLimit !== null && phase !== "broker") row.ratioToBroker = row.perSecond / brokerLimit;
  run.rows.push(row);
  return row;
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
  try {
    const admin = postgres(cfg.databaseUrl, { max: 1, onnotice: () => {} });
    cleanups.push(() => admin.end());
    const db = await createBenchDatabase({
      admin,
      serverUrl: cfg.databaseUrl,
      size: cfg,
      keep: cfg.keepDb,
      log,
    });
    cleanups.push(db.close);
    const topicsFile = `${tmp}/topics.json`;
    await Deno.writeTextFile(topicsFile, JSON.stringify(db.topics));
    const run: Run = {
      cfg,
      runId,
      tmp,
      admin,
      db,
      topicsFile,
      cleanups,
      rows: [],
      windows: [],
      publishRates: [],
      holds: [],
      alerts: [],
      scales: [],
      fleet: null,
      mappings: null,
      commit: null,
    };
    if (cfg.phaseList.includes("db")) {
      addRow(run, "db", "database limit", null, await withLoad(() => databasePhase(cfg, db)));
    }
    if (cfg.phaseList.includes("processor")) {
      await resetData(db.sql);
      const r = await withLoad(() => processorPhase(cfg, db));
      addRow(run, "processor", "processor (no MQTT)", null, r);
      if (cfg.phaseList.includes("rollups")) {
        await resetData(db.sql);
        // As serve starts: the finest width in the batches, the coarser ones folded.
        await prepareRollupFolds(db.sql, BENCH_ROLLUP_FOLD_WIDTHS);
        const rolled = await withLoad(() => processorPhase(cfg, db, BENCH_ROLLUP_INTERVALS));
        addRow(run, "rollups", `processor --rollups ${BENCH_ROLLUP_WIDTHS}`, null, rolled);
      }
    }
    if (cfg.phaseList.includes("commit")) {
      await resetData(db.sql);
      log("commit verification: 200 rounds of 1,000 readings, each way");
      run.commit = await withLoad(() =>
        commitCostPhase(db.url, db.feedIds, { rounds: 200, batchSize: 1000 })
      );
      await resetData(db.sql);
    }
    if (cfg.phaseList.some((p) => MQTT_PHASES.includes(p))) {
      // An external broker's setting is whatever its operator chose: run once.
      const settings: Inflight[] = cfg.mqttUrl ? ["unknown"] : cfg.brokerInflight;
      for (const inflight of settings) await runSetting(run, inflight);
    }
    await report(run, machine);
  } finally {
    for (const c of cleanups.reverse()) await c().catch((e) => log(`cleanup: ${e.message}`));
  }
}

/** Every MQTT phase asked for, on a broker of its own with max_inflight_messages `inflight`. */
async function runSetting(run: Run, inflight: Inflight): Promise<void> {
  const { cfg, db } = run;
  const has = (phase: string) => cfg.phaseList.includes(phase);
  const broker = await openBroker(cfg, inflight);
  try {
    const pc = (rate: number): PublisherConfig => ({
      url: broker.url,
      topicsFile: run.topicsFile,
      count: cfg.count,
      qos: cfg.qos,
      connections: cfg.connections,
      rate,
      format: cfg.format,
      window: cfg.pubWindow,
      ...(cfg.payloadPad > 0 ? { padBytes: cfg.payloadPad } : {}),
    });
    if (has("window")) {
      // serve advertises --ack-window as its Receive Maximum (default 20).
      run.windows.push({ inflight, ...await probeWindow(broker.url, 5, 20) });
    }
    let brokerLimit: number | null = null;
    if (has("broker")) {
      const r = await withLoad(() => brokerPhase(cfg, broker, pc(0)));
      brokerLimit = addRow(run, "broker", "broker limit", inflight, r).perSecond;
    }
    const rate = resolveRate(cfg.rate, brokerLimit);
    run.publishRates.push({ inflight, rate });
    const serveOptions = {
      main: cfg.serveMain ?? OWN_MAIN_TS,
      mqttUrl: broker.url,
      qos: cfg.qos,
      format: cfg.format,
      serveArgs: cfg.serveArgList,
      cpuProfDir: cfg.cpuProf ? await profileDir(run.runId) : undefined,
      v8Flags: serveV8Flags(cfg.serveV8Flags, cfg.serveArgList),
      idleMs: cfg.idleMs,
      brokerPid: broker.pid,
      log,
    };
    let serveRate: number | null = null;
    if (has("serve")) {
      await resetData(db.sql);
      const r = await withLoad(() =>
        servePhase({ ...serveOptions, dbUrl: db.url, sql: db.sql }, pc(rate))
      );
      serveRate = addRow(run, "serve", "feedline serve", inflight, r, brokerLimit).perSecond;
    }
    if (has("rollups")) {
      await resetData(db.sql);
      const serveArgs = rollupServeArgs(serveOptions.serveArgs);
      const r = await withLoad(() =>
        servePhase({ ...serveOptions, serveArgs, dbUrl: db.url, sql: db.sql }, pc(rate))
      );
      addRow(run, "rollups", `serve --rollups ${BENCH_ROLLUP_WIDTHS}`, inflight, r, brokerLimit);
    }
    if (has("alerts")) {
      await resetData(db.sql);
      const { result, alerts } = await withAlertRules(
        db.sql,
        cfg.count,
        inflight,
        () => withLoad(() => servePhase({ ...serveOptions, dbUrl: db.url, sql: db.sql }, pc(rate))),
      );
      addRow(run, "alerts", "serve, alert rules on", inflight, result, brokerLimit);
      run.alerts.push(alerts);
    }
    if (has("sparkplug")) {
      await resetData(db.sql);
      const r = await withLoad(() =>
        sparkplugPhase({
          serve: { ...serveOptions, dbUrl: db.url, sql: db.sql },
          pc: pc(rate),
          tmp: run.tmp,
          userId: db.topics[0].split("/")[0],
          sql: db.sql,
        })
      );
      // Readings/s: no ratio to the broker limit, which counts messages.
      addRow(run, "sparkplug", `sparkplug, ${METRICS} metrics/DDATA`, inflight, r, null);
    }
    if (has("mappings")) {
      await resetData(db.sql);
      const fleet = run.mappings ??= await createMappingsFleet(db.sql, run.tmp, cfg.devices * 10);
      const r = await withLoad(() =>
        mappingsPhase({ ...serveOptions, dbUrl: db.url, sql: db.sql }, fleet, pc(rate))
      );
      // Its rows are readings (4 a message): no share of the broker's messages/s.
      addRow(run, "mappings", "serve --mappings, 50 rules (rows = readings)", inflight, r);
    }
    if (has("hold")) {
      await resetData(db.sql);
      const hold = await withLoad(() =>
        holdPhase({
          ...serveOptions,
          serveMain: serveOptions.main,
          dbUrl: db.url,
          sql: db.sql,
          pc: pc(rate),
          runPublisher,
          v8Flags: serveV8Flags(cfg.serveV8Flags, cfg.serveArgList),
        })
      );
      run.holds.push({ ...hold, inflight });
      run.rows.push(holdRow(hold, inflight));
    }
    if (has("scale")) {
      const results = await scalePhase({
        ...serveOptions,
        counts: [1, 2, 3],
        dbUrl: db.url,
        sql: db.sql,
        pc: pc(rate),
        reset: () => resetData(db.sql),
      });
      run.scales.push({ inflight, results });
      for (const r of scaleRows(results, inflight)) {
        if (brokerLimit !== null) r.ratioToBroker = r.perSecond / brokerLimit;
        run.rows.push(r);
      }
    }
    if (has("fleet")) {
      const sizes = cfg.fleetSizes.length > 0
        ? cfg.fleetSizes.map(fleetOfSize)
        : [{ users: cfg.fleetUsers, devices: cfg.fleetDevices, feeds: cfg.fleetFeeds }];
      for (const f of fleetRuns(sizes, cfg.fleetTuned)) {
        const fleet = await openFleet(run, f.size);
        const serveArgs = [...serveOptions.serveArgs, ...f.serveArgs];
        // The heap budget follows the run's own cache size (src/ingest/memory_budget.ts).
        const v8Flags = serveV8Flags(cfg.serveV8Flags, serveArgs);
        const serve = { ...serveOptions, serveArgs, v8Flags };
        const r = await withLoad(() =>
          fleetPhase({ fleet, admin: run.admin, serve, pc: pc(rate), serveRate })
        );
        r.extra = { ...r.extra, tunedCache: f.tuned };
        addRow(run, "fleet", fleetRowName(fleet.feeds, f.tuned), inflight, r, brokerLimit);
      }
    }
  } finally {
    await broker.close();
  }
}

/** The fleet of `size`, created on first use; the one before it is dropped then. */
async function openFleet(run: Run, size: FleetSize): Promise<FleetDatabase> {
  const { cfg } = run;
  const key = `${size.users}x${size.devices}x${size.feeds}`;
  if (run.fleet?.key === key) return run.fleet.db;
  await run.fleet?.db.close();
  const fleet = await createFleetDatabase({
    admin: run.admin,
    serverUrl: cfg.databaseUrl,
    size,
    keep: cfg.keepDb,
    dir: run.tmp,
    log,
  });
  // Dropped before the first database and the admin connection (cleanups run reversed).
  run.cleanups.push(fleet.close);
  run.fleet = { key, db: fleet };
  return fleet;
}

async function profileDir(runId: string): Promise<string> {
  const dir = new URL(`prof/${runId}/`, RESULTS_DIR).pathname;
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

/** The serve phase: one serve process, one pass. */
async function servePhase(opts: ServeOptions, pc: PublisherConfig): Promise<PassResult> {
  const serve = await startServe(opts);
  try {
    return await serve.measurePass(pc);
  } finally {
    await serve.stop();
  }
}

/** Prints the summary, the notes and the targets, and writes the results JSON. */
async function report(run: Run, machine: Awaited<ReturnType<typeof machineInfo>>) {
  const { cfg } = run;
  if (run.rows.length > 0) printSummary(run.rows);
  printNotes(run.rows, run.windows);
  printMappingsComparison(run.rows.filter((r): r is PhaseResult => r.perSecond !== undefined));
  printRollupsCost(run.rows.filter((r): r is PhaseResult => r.perSecond !== undefined));
  printAlertsCost(run.rows.filter((r): r is PhaseResult => r.perSecond !== undefined), run.alerts);
  for (const s of run.scales) {
    console.log(`\n${phaseName("scale", s.inflight)}:`);
    printScale(s.results);
  }
  for (const h of run.holds) printHold(h);
  if (run.commit) printCommitCost(run.commit, cfg.qos, run.rows);
  const targets = evaluateTargets({
    qos: cfg.qos,
    rate: cfg.rate,
    serveArgs: cfg.serveArgList,
    rows: run.rows,
  });
  printTargets(targets);
  printCurve(run.rows);
  const v8Flags = serveV8Flags(cfg.serveV8Flags, cfg.serveArgList);
  printMarkdownTable(
    ["memory budget and CPU (issue 26)", "measured", "result"],
    [
      ...memoryTargetLines(run.rows, cfg.serveArgList, v8Flags),
      ...cpuTargetLines(run.rows, cfg.qos, isFlatOut(cfg.rate)),
      ...shareTargetLines(run.rows, cfg.qos, isFlatOut(cfg.rate)),
    ].map((t) => [t.target, t.measured, t.result]),
    3,
  );
  const loadAvgAtEnd = Deno.loadavg();
  const loads = (l: number[]) => l.map((x) => x.toFixed(2)).join(" ");
  console.log(
    `\nload average (1, 5, 15 min) at start ${loads(machine.loadAvgAtStart)}, at end ` +
      loads(loadAvgAtEnd),
  );
  await Deno.mkdir(RESULTS_DIR, { recursive: true });
  const file = new URL(`${run.runId}-qos${cfg.qos}-n${cfg.count}.json`, RESULTS_DIR);
  const { phaseList: _, serveArgList: __, ...config } = cfg;
  const brokerSettings = cfg.mqttUrl ? ["unknown"] : cfg.brokerInflight;
  const results = {
    runId: run.runId,
    label: cfg.label,
    config,
    machine: { ...machine, loadAvgAtEnd },
    brokerSettings,
    mosquittoConfigs: cfg.mqttUrl
      ? null
      : Object.fromEntries(cfg.brokerInflight.map((n) => [n, mosquittoConfig(n)])),
    publishRates: run.publishRates,
    windows: run.windows,
    results: run.rows,
    targets,
    scale: run.scales,
    hold: run.holds,
    alerts: run.alerts,
    commit: run.commit,
  };
  await Deno.writeTextFile(file, JSON.stringify(results, null, 2) + "\n");
  console.log(`results: ${file.pathname}`);
}

function resolveRate(rate: string, brokerLimit: number | null): number {
  if (!rate.endsWith("%")) return Number(rate);
  if (brokerLimit === null) {
    throw new FeedlineError("USAGE", "--rate N% needs the broker phase (see --phases)");
  }
  return Math.round((brokerLimit * Number(rate.slice(0, -1))) / 100);
}

/** The broker limit: what one subscriber that only counts receives per second. */
async function brokerPhase(
  cfg: BenchConfig,
  broker: Broker,
  pc: PublisherConfig,
): Promise<PassResult> {
  log(`broker limit: ${cfg.count} messages, QoS ${cfg.qos}`);
  const cc: CounterConfig = {
    url: broker.url,
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
    const brokerCpuAtStart = broker.pid === null ? null : await cpuSeconds(broker.pid);
    const pub = await runPublisher(pc);
    const report: CounterReport = JSON.parse(await counter.waitForLine((l) => l.startsWith("{")));
    const brokerCpuAtEnd = broker.pid === null ? null : await cpuSeconds(broker.pid);
    const seconds = (report.lastMs - pub.firstMs) / 1000;
    return {
      messages: report.received,
      seconds,
      perSecond: report.received / seconds,
      lost: pub.published - report.received,
      cpuUsPerMessage: report.cpuUs / Math.max(1, report.received),
      brokerCpuUsPerMessage: brokerCpuAtStart !== null && brokerCpuAtEnd !== null
        ? Number((((brokerCpuAtEnd - brokerCpuAtStart) * 1e6) / pub.published).toFixed(1))
        : undefined,
      publisherCpuUsPerMessage: Number((pub.cpuUs / pub.published).toFixed(1)),
      extra: { publishSeconds: (pub.lastMs - pub.firstMs) / 1000 },
    };
  } finally {
    await counter.stop("SIGTERM", 2000);
  }
}

/** The database limit: serve's insert alone, one transaction per batch, no MQTT. */
async function databasePhase(cfg: BenchConfig, db: BenchDatabase): Promise<PassResult> {
  const { sql, feedIds } = db;
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
    // The insert of the processor's fast way (src/ingest/write/values.ts, no `on conflict`),
    // without the last-value update or anything else around it.
    await sql.begin((tx) =>
      tx`
      insert into feed_values (feed_id, value, value_text, created_at, received_at)
      select f, v, null, to_timestamp(0) + c * interval '1 microsecond',
             to_timestamp(0) + c * interval '1 microsecond'
      from unnest(${f}::int8[], ${v}::float8[], ${c}::int8[]) as x(f, v, c)`
    );
  }
  const seconds = (performance.now() - started) / 1000;
  const pgCpu = (await postgresCpuSeconds()) - pgCpuAtStart;
  const [{ n }] = await sql<{ n: number }[]>`select count(*)::int as n from feed_values`;
  return {
    messages: n,
    seconds,
    perSecond: n / seconds,
    // PostgreSQL's CPU, not ours: the figure serve's transaction is compared with.
    postgresCpuUsPerRow: Number(((pgCpu * 1e6) / n).toFixed(1)),
  };
}

/** feedline's decode + processBatch in this process, no MQTT. */
async function processorPhase(
  cfg: BenchConfig,
  db: BenchDatabase,
  rollups: readonly string[] | null = null,
): Promise<PassResult> {
  const { sql, topics } = db;
  log(
    `processor (decode + processBatch, no MQTT): ${cfg.count} messages` +
      (rollups ? ` (rollups ${rollups.join(", ")})` : ""),
  );
  const encoder = new TextEncoder();
  const opts: DecodeOptions = {
    router: compileTopics(),
    maxPayloadBytes: 65536,
    maxTextLength: 255,
    maxFutureSkewMs: 300_000,
  };
  const feedCache = new FeedCache();
  let lastUs = 0;
  const pgCpuAtStart = await postgresCpuSeconds();
  const cpuStart = process.cpuUsage();
  const started = performance.now();
  let stored = 0;
  for (let start = 0; start < cfg.count; start += cfg.batchSize) {
    const n = Math.min(cfg.batchSize, cfg.count - start);
    const batch: DecodedMessage[] = new Array(n);
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
    stored += (await processBatch(sql, batch, { feedCache, rollups })).stored;
  }
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  const pgCpu = (await postgresCpuSeconds()) - pgCpuAtStart;
  return {
    messages: stored,
    seconds,
    perSecond: stored / seconds,
    lost: cfg.count - stored,
    cpuUsPerMessage: (cpu.user + cpu.system) / cfg.count,
    postgresCpuUsPerRow: Number(((pgCpu * 1e6) / Math.max(1, stored)).toFixed(1)),
  };
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

/**
 * The `scale` phase of `deno task bench`: 1, 2 and 3 `serve` processes in one shared
 * subscription group (`--shared-group`, MQTT 5) on one broker and one database. For each
 * configuration: the stored rate (readings stored / seconds from first publish until the
 * last is stored) and the CPU seconds of every process that took part (each serve, the
 * broker, the database backends serving the bench database, the publisher), read from
 * /proc, so the bottleneck can be named on a machine with few cores.
 */
import type postgres from "postgres";
import { freePort } from "../test/support/broker.ts";
import { type Child, cpuSeconds, spawnDeno } from "./children.ts";
import type { PublisherConfig, PublisherReport } from "./publisher.ts";
import { metric } from "./text.ts";

/** One configuration's result. */
export interface ScaleResult {
  instances: number;
  published: number;
  stored: number;
  seconds: number;
  perSecond: number;
  /** CPU seconds during the run by process: serve#1.., mosquitto, postgres, publisher. */
  cpu: Record<string, number>;
  /** Sum of `cpu` / (seconds × cores): how busy the machine's cores were with this. */
  cpuShareOfMachine: number;
  /** Messages each serve processed (how the broker split the group). */
  split: number[];
  /** Load averages before and after this configuration. */
  loadBefore: number[];
  loadAfter: number[];
}

const OWN_MAIN_TS = new URL("../main.ts", import.meta.url).pathname;

function log(msg: string): void {
  console.error(`[bench] ${msg}`);
}

async function backendCpu(sql: postgres.Sql, db: string): Promise<Map<number, number>> {
  const rows = await sql<{ pid: number }[]>`
    select pid from pg_stat_activity where datname = ${db} and pid <> pg_backend_pid()`;
  const out = new Map<number, number>();
  for (const { pid } of rows) {
    const s = await cpuSeconds(pid);
    if (s !== null) out.set(pid, s);
  }
  return out;
}

async function metricSum(url: string, name: string): Promise<number> {
  return metric(await fetch(`${url}/metrics`).then((r) => r.text(), () => ""), name);
}

/** Runs the configurations in `counts` one after another on an emptied table. */
export async function scalePhase(opts: {
  counts: number[];
  mqttUrl: string;
  dbUrl: string;
  sql: postgres.Sql;
  pc: PublisherConfig;
  serveArgs: string[];
  idleMs: number;
  reset: () => Promise<void>;
  /** Our private Mosquitto's pid; null for a broker given by --mqtt-url. */
  brokerPid: number | null;
}): Promise<ScaleResult[]> {
  const results: ScaleResult[] = [];
  const dbName = new URL(opts.dbUrl).pathname.slice(1);
  const brokerPid = opts.brokerPid;
  if (brokerPid === null) log("scale: the broker is not ours; its CPU is not reported");
  for (const n of opts.counts) {
    await opts.reset();
    const loadBefore = Deno.loadavg();
    // A group of its own per configuration, and sessions that end with the connection:
    // a stopped member's session must not keep its share of the next run.
    const group = `bench${crypto.randomUUID().slice(0, 6)}`;
    const serves: { child: Child; url: string }[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const port = await freePort();
        const child = spawnDeno([
          "run",
          "-A",
          OWN_MAIN_TS,
          "serve",
          ...["--mqtt-url", opts.mqttUrl, "--database-url", opts.dbUrl],
          ...["--http", `127.0.0.1:${port}`, "--qos", String(opts.pc.qos)],
          ...["--shared-group", group, "--session-expiry", "0"],
          ...["--client-id", `${group}-${i + 1}`, "--log-level", "warn", "--log-format", "json"],
          ...opts.serveArgs,
        ], { echo: true });
        serves.push({ child, url: `http://127.0.0.1:${port}` });
      }
      for (const s of serves) {
        const by = Date.now() + 60_000;
        while (
          !(await fetch(`${s.url}/readyz`).then((r) => (r.body?.cancel(), r.ok), () => false))
        ) {
          if (Date.now() > by) throw new Error("serve did not become ready within 60 s");
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      const serveCpu0 = await Promise.all(serves.map((s) => cpuSeconds(s.child.pid)));
      const brokerCpu0 = brokerPid ? await cpuSeconds(brokerPid) : null;
      const pg0 = await backendCpu(opts.sql, dbName);
      const t0 = performance.now();
      log(`scale: ${n} instance(s) in group ${group}, ${opts.pc.count} messages`);

      const pub = spawnDeno([
        "run",
        "-A",
        new URL("./publisher.ts", import.meta.url).pathname,
        JSON.stringify(opts.pc),
      ]);
      let pubCpu = 0;
      const pubWatch = setInterval(async () => {
        pubCpu = (await cpuSeconds(pub.pid)) ?? pubCpu;
      }, 100);
      const report: PublisherReport = JSON.parse(await pub.waitForLine((l) => l.startsWith("{")));
      await pub.process.status;
      clearInterval(pubWatch);

      let processed = 0;
      let last = performance.now();
      let split: number[] = [];
      while (processed < report.published && performance.now() - last < opts.idleMs) {
        await new Promise((r) => setTimeout(r, 50));
        split = await Promise.all(
          serves.map((s) => metricSum(s.url, "feedline_messages_processed_total")),
        );
        const now = split.reduce((a, b) => a + b, 0);
        if (now !== processed) last = performance.now();
        processed = now;
      }
      const seconds = (performance.now() - t0) / 1000;
      const cpu: Record<string, number> = {};
      for (let i = 0; i < n; i++) {
        cpu[`serve#${i + 1}`] = ((await cpuSeconds(serves[i].child.pid)) ?? 0) -
          (serveCpu0[i] ?? 0);
      }
      if (brokerPid && brokerCpu0 !== null) {
        cpu.mosquitto = ((await cpuSeconds(brokerPid)) ?? brokerCpu0) - brokerCpu0;
      }
      const pg1 = await backendCpu(opts.sql, dbName);
      let pgCpu = 0;
      for (const [pid, s] of pg1) pgCpu += s - (pg0.get(pid) ?? 0);
      cpu.postgres = pgCpu;
      cpu.publisher = pubCpu;
      const [{ stored }] = await opts.sql<{ stored: number }[]>`
        select count(*)::int as stored from feed_values`;
      const total = Object.values(cpu).reduce((a, b) => a + b, 0);
      results.push({
        instances: n,
        published: report.published,
        stored,
        seconds,
        perSecond: stored / seconds,
        cpu: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, Number(v.toFixed(2))])),
        cpuShareOfMachine: Number((total / (seconds * navigator.hardwareConcurrency)).toFixed(2)),
        split,
        loadBefore,
        loadAfter: Deno.loadavg(),
      });
    } finally {
      for (const s of serves) await s.child.stop("SIGTERM", 10_000);
    }
  }
  return results;
}

/** Prints the scale results as a table. */
export function printScale(results: ScaleResult[]): void {
  console.log("\n| instances | stored | seconds | stored/s | CPU s by process | CPU / cores |");
  console.log("|---:|---:|---:|---:|---|---:|");
  for (const r of results) {
    const cpu = Object.entries(r.cpu).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(", ");
    console.log(
      `| ${r.instances} | ${r.stored} | ${r.seconds.toFixed(2)} | ${
        Math.round(r.perSecond).toLocaleString("en-US")
      } | ${cpu} | ${(r.cpuShareOfMachine * 100).toFixed(0)}% |`,
    );
  }
  console.log(
    `split of messages between instances: ${results.map((r) => r.split.join("/")).join("; ")}`,
  );
}

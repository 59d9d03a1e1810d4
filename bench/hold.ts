/**
 * The `hold` phase of `deno task bench` (issue 15): resident memory of a running serve
 * per message it holds. serve runs as in the serve phase, but over MQTT 3.1.1 (no
 * Receive Maximum), and `feed_values` is locked so no batch commits: every message
 * published is held by serve until its queue is full, the rest waits at the broker.
 * Reported: VmRSS before publishing and once nothing more arrives, the messages held
 * (queued plus the batch in flight), and the difference per message; and, sampled from
 * serve's /metrics every 50 ms while it reads, the highest V8 heap and external memory (the
 * ArrayBuffers: socket chunks and payloads). Then the lock is released and every message
 * must end in a table: stored, or rejected (a payload over --max-payload-bytes).
 */
import type postgres from "postgres";
import { freePort } from "../test/support/broker.ts";
import { peakRssBytes, rssBytes, spawnDeno } from "./children.ts";
import { metric } from "./text.ts";
import type { PublisherConfig, PublisherReport } from "./publisher.ts";

/** What the hold phase measured. */
export interface HoldResult {
  published: number;
  held: number;
  idleRssMb: number;
  heldRssMb: number;
  peakRssMb: number;
  bytesPerHeld: number;
  /** Rows in feed_values plus ingest_rejects once the lock was released. */
  stored: number;
  /** The highest V8 heap and external memory sampled while serve read, MB. */
  heapPeakMb: number;
  externalPeakMb: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs serve, holds `pc.count` messages in it, measures, releases. */
export async function holdPhase(opts: {
  mqttUrl: string;
  dbUrl: string;
  sql: postgres.Sql;
  pc: PublisherConfig;
  serveMain: string;
  serveArgs: string[];
  idleMs: number;
  /** serve's --v8-flags (bench/memory_target.ts); none when undefined. */
  v8Flags?: string;
  runPublisher(pc: PublisherConfig): Promise<PublisherReport>;
  log(msg: string): void;
}): Promise<HoldResult> {
  const { pc, sql, log } = opts;
  const httpPort = await freePort();
  const serve = spawnDeno([
    "run",
    "-A",
    ...(opts.v8Flags ? [`--v8-flags=${opts.v8Flags}`] : []),
    opts.serveMain,
    "serve",
    ...["--mqtt-url", opts.mqttUrl, "--database-url", opts.dbUrl],
    ...["--http", `127.0.0.1:${httpPort}`, "--qos", String(pc.qos), "--mqtt-protocol", "3.1.1"],
    ...["--client-id", `feedline-hold-${crypto.randomUUID().slice(0, 8)}`],
    ...["--log-level", "warn", "--log-format", "json", ...opts.serveArgs],
  ], { echo: true });
  const base = `http://127.0.0.1:${httpPort}`;
  const blocker = await sql.reserve();
  let locked = false;
  try {
    const readyBy = Date.now() + 60_000;
    for (; Date.now() < readyBy; await sleep(100)) {
      const ok = await fetch(`${base}/readyz`).then(async (r) => {
        await r.body?.cancel();
        return r.ok;
      }, () => false);
      if (ok) break;
    }
    await sleep(1_000);
    const idle = (await rssBytes(serve.pid)) ?? 0;
    await blocker`begin`;
    await blocker`lock table feed_values in exclusive mode`;
    locked = true;
    log(`hold: feed_values locked; publishing ${pc.count} messages, QoS ${pc.qos}`);
    const peaks = { heap: 0, external: 0 };
    let reading = true;
    const sampling = (async () => {
      for (; reading; await sleep(50)) {
        const text = await fetch(`${base}/metrics`).then((r) => r.text(), () => "");
        if (text === "") continue;
        const heap = metric(text, "feedline_process_heap_total_bytes");
        peaks.heap = Math.max(peaks.heap, heap);
        peaks.external = Math.max(
          peaks.external,
          metric(text, "feedline_process_external_memory_bytes"),
        );
      }
    })();
    const pub = await opts.runPublisher(pc);
    const gauges = async () => {
      const text = await fetch(`${base}/metrics`).then((r) => r.text());
      return {
        held: metric(text, "feedline_queue_depth_data") +
          metric(text, "feedline_queue_depth_status") + metric(text, "feedline_in_flight_messages"),
        received: metric(text, "feedline_messages_received_total"),
      };
    };
    let last = await gauges();
    for (let stable = 0; stable < 20; await sleep(100)) {
      const now = await gauges();
      stable = now.received === last.received ? stable + 1 : 0;
      last = now;
    }
    reading = false;
    await sampling;
    const heldRss = (await rssBytes(serve.pid)) ?? 0;
    const peak = await peakRssBytes(serve.pid) ?? 0;
    log(`hold: ${last.held} held, VmRSS ${(heldRss / 2 ** 20).toFixed(0)} MB`);
    await blocker`rollback`;
    locked = false;
    let stored = 0;
    let lastChange = performance.now();
    while (stored < pub.published && performance.now() - lastChange < opts.idleMs) {
      await sleep(200);
      const [{ n }] = await sql<{ n: number }[]>`
        select (select count(*) from feed_values)::int + (select count(*) from ingest_rejects)::int
          as n`;
      if (n !== stored) lastChange = performance.now();
      stored = n;
    }
    return {
      published: pub.published,
      held: last.held,
      idleRssMb: idle / 2 ** 20,
      heldRssMb: heldRss / 2 ** 20,
      peakRssMb: peak / 2 ** 20,
      bytesPerHeld: last.held > 0 ? (heldRss - idle) / last.held : 0,
      stored,
      heapPeakMb: peaks.heap / 2 ** 20,
      externalPeakMb: peaks.external / 2 ** 20,
    };
  } finally {
    if (locked) await blocker`rollback`.catch(() => {});
    blocker.release();
    await serve.stop("SIGTERM", 10_000);
  }
}

/** Prints the hold phase's line. */
export function printHold(r: HoldResult): void {
  console.log(
    `\nhold: ${r.held} messages held by serve (of ${r.published} published); VmRSS ` +
      `${r.idleRssMb.toFixed(0)} MB idle → ${r.heldRssMb.toFixed(0)} MB held = ` +
      `${(r.bytesPerHeld / 1024).toFixed(2)} KB per held message (peak ${
        r.peakRssMb.toFixed(0)
      } MB; sampled while reading: V8 heap ${r.heapPeakMb.toFixed(0)} MB, external ${
        r.externalPeakMb.toFixed(0)
      } MB); ${r.stored} stored or rejected after the lock was released`,
  );
}

/**
 * The Sparkplug phase of `deno task bench` (docs/performance.md, "Sparkplug B"): serve
 * with `--sparkplug-tenant`, as its own process, fed by the publisher's Sparkplug mode
 * (bench/publisher.ts): BIRTHs first, then DDATA of `METRICS` Double metrics by alias
 * alone, over 10 edge nodes of 2 devices. As many readings as the serve phase's messages
 * (`--count`), so its readings/s and serve CPU µs per reading stand beside the serve
 * phase's of the same run, on the same broker setting.
 */
import type postgres from "postgres";
import type { PublisherConfig } from "./publisher.ts";
import type { PhaseResult } from "./rows.ts";
import { type ServeOptions, startServe } from "./serve_process.ts";

/** Metrics per DDATA. */
export const METRICS = 100;
const EDGE_NODES = 10;
const DEVICES_PER_NODE = 2;

/** The DDATA topics the publisher sends to, one per device. */
export function sparkplugTopics(): string[] {
  const topics: string[] = [];
  for (let e = 1; e <= EDGE_NODES; e++) {
    for (let d = 1; d <= DEVICES_PER_NODE; d++) {
      topics.push(`spBv1.0/bench/DDATA/edge-${e}/dev-${d}`);
    }
  }
  return topics;
}

/** Runs the phase; `pc` is the serve phase's publisher config (its count in readings). */
export async function sparkplugPhase(opts: {
  serve: ServeOptions;
  pc: PublisherConfig;
  tmp: string;
  /** The tenant: a user of the bench database. */
  userId: string;
  sql: postgres.Sql;
}): Promise<Omit<PhaseResult, "name" | "phase" | "inflight">> {
  const topicsFile = `${opts.tmp}/sparkplug_topics.json`;
  await Deno.writeTextFile(topicsFile, JSON.stringify(sparkplugTopics()));
  const serve = await startServe({
    ...opts.serve,
    format: "json", // payload times are publish times: the latency is publish→commit
    serveArgs: [...opts.serve.serveArgs, "--sparkplug-tenant", opts.userId],
  });
  try {
    const messages = Math.max(1, Math.round(opts.pc.count / METRICS));
    const r = await serve.measurePass({
      ...opts.pc,
      topicsFile,
      count: messages,
      format: "sparkplug",
      sparkplugMetrics: METRICS,
    });
    const readings = messages * METRICS;
    return {
      ...r,
      // Readings, not messages: beside the serve phase's one reading per message.
      lost: readings - r.messages - r.rejected! * METRICS,
      cpuUsPerMessage: r.extra?.serveCpuUsPerRow as number | undefined,
      extra: { ...r.extra, ddataMessages: messages, metricsPerMessage: METRICS },
    };
  } finally {
    await serve.stop();
  }
}

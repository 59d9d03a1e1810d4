/**
 * The `mappings` phase of `deno task bench` (issue 22): serve with `--mappings` on a file
 * of 50 rules, fed a Zigbee2MQTT-like fleet: `zigbee2mqtt/<device>` with a state of four
 * readings and a `last_seen` in µs (the publish time, so publish→commit latency is
 * measured as in the serve phase), through the zigbee2mqtt recipe's rule among 49 others
 * that match other topics. Readings/s and serve CPU µs per reading are printed beside
 * the plain-topic serve phase of the same run and broker setting.
 */
import type postgres from "postgres";
import { Z2M_READINGS } from "./publisher.ts";
import type { PublisherConfig } from "./publisher.ts";
import type { PhaseResult } from "./rows.ts";
import { type PassResult, type ServeOptions, startServe } from "./serve_process.ts";
import { fmtRate } from "./text.ts";

/** The tenant alias of the benchmark's Zigbee2MQTT fleet. */
const ALIAS = "bench-zigbee2mqtt";

/** The Zigbee2MQTT fields the publisher sends (and feeds registered for each). */
export const Z2M_FIELDS = ["temperature", "humidity", "battery", "voltage"] as const;

/**
 * A mappings file of `count` rules: the zigbee2mqtt recipe's two rules, and others of
 * other shapes and prefixes that a real file could hold beside them, none of which the
 * fleet's topics match (so every message goes through the matcher of all of them).
 */
export function benchMappings(count: number): unknown {
  const rules: Record<string, unknown>[] = [
    {
      name: "device state",
      topic: "zigbee2mqtt/{device}",
      readings: "all",
      text: ["state"],
      ignore: ["linkquality", "update"],
      time: "last_seen",
    },
    { name: "availability", topic: "zigbee2mqtt/{device}/availability", status: { path: "state" } },
  ];
  for (let i = rules.length; i < count; i++) {
    const shapes = [
      { topic: `site${i}/{device}/tele`, readings: "all" },
      { topic: `tele/{device}/SENSOR${i}`, readings: "all" },
      { topic: `{device}/status/kind${i}`, readings: "all" },
      { topic: `plant/line${i}/{device}/{part}`, readings: ["value"], feed_key: "{device}.{part}" },
      { topic: `z2m${i}/{device}`, readings: "all", time: "last_seen" },
    ];
    rules.push({ name: `rule ${i}`, ...shapes[i % shapes.length] });
  }
  return { tenant: { alias: ALIAS }, rules };
}

/** The fleet of the phase: registered in `sql`, its topics and mappings files in `dir`. */
export interface MappingsFleet {
  topicsFile: string;
  mappingsFile: string;
  devices: number;
}

/**
 * Registers a user with the alias, `devices` devices and their Zigbee2MQTT feeds
 * (`<device>.<field>`) in the benchmark database, and writes the topics and the 50-rule
 * mappings file to `dir`.
 */
export async function createMappingsFleet(
  sql: postgres.Sql,
  dir: string,
  devices: number,
): Promise<MappingsFleet> {
  const user = crypto.randomUUID();
  const codes = Array.from(
    { length: devices },
    (_, i) => `0x00158d00${i.toString(16).padStart(8, "0")}`,
  );
  await sql`insert into users (id) values (${user})`;
  await sql`insert into tenant_aliases (alias, user_id) values (${ALIAS}, ${user})`;
  await sql`insert into devices (user_id, code) select ${user}, * from unnest(${codes}::text[])`;
  const keys = codes.flatMap((c) => Z2M_FIELDS.map((f) => `${c}.${f}`));
  await sql`
    insert into feeds (user_id, key, device_id)
    select ${user}, k, d.id from unnest(${keys}::text[]) as k
    join devices d on d.user_id = ${user} and d.code = split_part(k, '.', 1)`;
  await sql`vacuum analyze`;
  const topicsFile = `${dir}/mappings-topics.json`;
  const mappingsFile = `${dir}/mappings-50.json`;
  await Deno.writeTextFile(topicsFile, JSON.stringify(codes.map((c) => `zigbee2mqtt/${c}`)));
  await Deno.writeTextFile(mappingsFile, JSON.stringify(benchMappings(50)));
  return { topicsFile, mappingsFile, devices };
}

/** The phase: one serve with the mappings file, one pass of the Zigbee2MQTT fleet. */
export async function mappingsPhase(
  opts: ServeOptions,
  fleet: MappingsFleet,
  pc: PublisherConfig,
): Promise<PassResult> {
  const serve = await startServe({
    ...opts,
    format: "json",
    serveArgs: [...opts.serveArgs, "--mappings", fleet.mappingsFile],
  });
  try {
    return await serve.measurePass({ ...pc, topicsFile: fleet.topicsFile, format: "zigbee2mqtt" });
  } finally {
    await serve.stop();
  }
}

/** Serve CPU µs per reading of a row (a plain-topic message is one reading). */
function cpuPerReading(row: PhaseResult): number | undefined {
  const perMessage = row.cpuUsPerMessage;
  const readings = Number(row.extra?.readingsPerMessage ?? 1);
  return perMessage === undefined ? undefined : perMessage / readings;
}

/** The mappings rows beside the serve rows of the same broker setting. */
export function printMappingsComparison(rows: readonly PhaseResult[]): void {
  const mapped = rows.filter((r) => r.phase === "mappings");
  if (mapped.length === 0) return;
  console.log(
    `\nmappings (50 rules, ${Z2M_READINGS} readings per Zigbee2MQTT message) beside plain topics:`,
  );
  for (const m of mapped) {
    const plain = rows.find((r) => r.phase === "serve" && r.inflight === m.inflight);
    const line = (r: PhaseResult) =>
      `${fmtRate(r.perSecond)} readings/s, serve CPU ${
        cpuPerReading(r)?.toFixed(1) ?? "?"
      } µs/reading`;
    console.log(
      `  inflight ${m.inflight}: mappings ${line(m)}` +
        (plain ? `; plain topics ${line(plain)}` : " (no serve phase in this run)"),
    );
  }
}

/**
 * The `fleet` phase of `deno task bench` (issue 15): serve against a large fleet,
 * `--fleet-users` × `--fleet-devices` × `--fleet-feeds` (1,000,000 feeds by default),
 * registered in a second fresh database. One serve process runs two passes:
 *
 * 1. warm-up: every feed published once, in fleet order, which fills serve's feed cache
 *    (each batch's cache misses are looked up in one statement);
 * 2. measured: `--count` messages round-robin over the same feeds in a shuffled order, so
 *    they spread over the whole fleet rather than the first `--count` feeds warmed.
 *
 * Reported besides the serve pass's numbers: the warm rate as a share of the 5,000-feed
 * serve rate on the same broker setting, the feed cache's memory per feed (idle VmRSS
 * after the warm-up pass minus idle VmRSS before it, over the number of feeds), and the
 * feed-lookup statements PostgreSQL ran in each pass against the number of batches
 * (from pg_stat_statements; null when the extension is not installed).
 */
import type postgres from "postgres";
import { type BenchDatabase, clearValues, createBenchDatabase, type FleetSize } from "./fleet.ts";
import { cpuSeconds } from "./children.ts";
import type { PublisherConfig } from "./publisher.ts";
import {
  type PassResult,
  type ServeOptions,
  type ServeProcess,
  startServe,
} from "./serve_process.ts";

/** The large fleet's database and the publisher's topic files for the two passes. */
export interface FleetDatabase extends Omit<BenchDatabase, "topics" | "feedIds"> {
  feeds: number;
  /** Every topic once, in fleet order. */
  warmUpTopicsFile: string;
  /** The same topics shuffled. */
  measuredTopicsFile: string;
}

/** Quiet time before reading an idle serve's VmRSS, so the last batch's garbage can go. */
const IDLE_PAUSE_MS = 3_000;

/** Creates and registers the large fleet and writes its topic files to `dir`. */
export async function createFleetDatabase(opts: {
  admin: postgres.Sql;
  serverUrl: string;
  size: FleetSize;
  keep: boolean;
  dir: string;
  log(msg: string): void;
}): Promise<FleetDatabase> {
  const { topics, feedIds: _, ...db } = await createBenchDatabase(opts);
  // One topic a line: 10M topics are more than one JavaScript string can hold as JSON.
  const warmUpTopicsFile = `${opts.dir}/fleet-topics.txt`;
  const measuredTopicsFile = `${opts.dir}/fleet-topics-shuffled.txt`;
  try {
    await writeLines(warmUpTopicsFile, topics);
    await writeLines(measuredTopicsFile, shuffle(topics));
  } catch (error) {
    await db.close(); // a 10M-feed database is gigabytes: not left behind by a failed run
    throw error;
  }
  return { ...db, feeds: topics.length, warmUpTopicsFile, measuredTopicsFile };
}

/** Writes `lines` to `path`, one a line, in chunks. */
async function writeLines(path: string, lines: string[]): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    const encoder = new TextEncoder();
    for (let i = 0; i < lines.length; i += 100_000) {
      const chunk = encoder.encode(lines.slice(i, i + 100_000).join("\n") + "\n");
      for (let off = 0; off < chunk.length;) off += await file.write(chunk.subarray(off));
    }
  } finally {
    file.close();
  }
}

/** Fisher–Yates, in place. */
function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

/**
 * Feed-lookup statements PostgreSQL has run so far in database `dbName`, or null without
 * pg_stat_statements. The lookup is the processor's `select ... from unnest(...) join
 * feeds f on ...`; `update feeds f ... from unnest(...)`, once per batch too, is not it.
 */
async function feedLookups(admin: postgres.Sql, dbName: string): Promise<number | null> {
  try {
    const [{ calls }] = await admin<{ calls: number }[]>`
      select coalesce(sum(s.calls), 0)::int as calls
      from pg_stat_statements s join pg_database d on d.oid = s.dbid
      where d.datname = ${dbName}
        and s.query like '%from unnest%' and s.query like '%join feeds f on%'`;
    return calls;
  } catch {
    return null;
  }
}

/**
 * Probes of `feeds`' (user_id, key) index so far (`feeds_user_key` since sql/016, which made
 * it cover the lookup; `feeds_user_id_key_key` before): one per feed looked up (the lookup joins
 * its keys to the index), whether pg_stat_statements is there or not. PostgreSQL's
 * statistics lag the commit by up to a second (bench/fleet_phase.ts waits before reading).
 */
async function feedIndexProbes(sql: postgres.Sql): Promise<number> {
  const [{ n }] = await sql<{ n: number }[]>`
    select coalesce(sum(idx_scan), 0)::float8 as n from pg_stat_user_indexes
    where relname = 'feeds' and indexrelname in ('feeds_user_key', 'feeds_user_id_key_key')`;
  return n;
}

/**
 * CPU seconds of the backends serving `dbName` (serve's pool), by pid: PostgreSQL's work
 * for this run alone, where postgresCpuSeconds (bench/children.ts) also counts every other
 * client of a shared server and its background writes.
 */
async function backendCpu(admin: postgres.Sql, dbName: string): Promise<Map<number, number>> {
  const rows = await admin<{ pid: number }[]>`
    select pid from pg_stat_activity where datname = ${dbName}`;
  const out = new Map<number, number>();
  for (const { pid } of rows) {
    const s = await cpuSeconds(pid);
    if (s !== null) out.set(pid, s);
  }
  return out;
}

/** The server's WAL so far (pg_stat_wal, PostgreSQL 14+): every database's, a busy server's too. */
async function walSoFar(admin: postgres.Sql): Promise<{ bytes: number; fpi: number } | null> {
  try {
    const [w] = await admin<{ bytes: number; fpi: number }[]>`
      select wal_bytes::float8 as bytes, wal_fpi::float8 as fpi from pg_stat_wal`;
    return w;
  } catch {
    return null; // before PostgreSQL 14
  }
}

function cpuBetween(before: Map<number, number>, after: Map<number, number>): number {
  let sum = 0;
  for (const [pid, s] of after) sum += s - (before.get(pid) ?? 0);
  return sum;
}

/** One pass, with the feed lookups PostgreSQL ran during it and its backends' CPU. */
async function passWithLookups(
  serve: ServeProcess,
  pc: PublisherConfig,
  admin: postgres.Sql,
  db: { name: string; sql: postgres.Sql },
): Promise<{
  result: PassResult;
  lookups: number | null;
  probes: number;
  batches: number;
  backendUsPerRow: number | null;
  /** WAL written per row in the pass, and full-page images per row. */
  wal: { bytesPerRow: number; fpiPerRow: number } | null;
}> {
  const before = await feedLookups(admin, db.name);
  const walBefore = await walSoFar(admin);
  const probesBefore = await feedIndexProbes(db.sql);
  const cpuBefore = await backendCpu(admin, db.name);
  const result = await serve.measurePass(pc);
  const cpuAfter = await backendCpu(admin, db.name);
  const walAfter = await walSoFar(admin);
  await new Promise((r) => setTimeout(r, STATS_LAG_MS));
  const after = await feedLookups(admin, db.name);
  const lookups = before === null || after === null ? null : after - before;
  const probes = (await feedIndexProbes(db.sql)) - probesBefore;
  const rows = result.messages;
  const backendUsPerRow = rows > 0
    ? Number((cpuBetween(cpuBefore, cpuAfter) * 1e6 / rows).toFixed(1))
    : null;
  const wal = walBefore && walAfter && rows > 0
    ? {
      bytesPerRow: Math.round((walAfter.bytes - walBefore.bytes) / rows),
      fpiPerRow: Number(((walAfter.fpi - walBefore.fpi) / rows).toFixed(3)),
    }
    : null;
  const batches = Number(result.extra?.batches ?? 0);
  return { result, lookups, probes, batches, backendUsPerRow, wal };
}

/** How long PostgreSQL may take to publish a committed transaction's statistics. */
const STATS_LAG_MS = 1_500;

const mb = (bytes: number) => Number((bytes / 2 ** 20).toFixed(1));

/** Runs the warm-up and the measured pass in one serve; returns the measured pass. */
export async function fleetPhase(opts: {
  fleet: FleetDatabase;
  /** A connection to the server's maintenance database, where pg_stat_statements is. */
  admin: postgres.Sql;
  serve: Omit<ServeOptions, "dbUrl" | "sql">;
  /** The measured pass's publisher; its topics file and the warm-up's count are set here. */
  pc: PublisherConfig;
  /** Stored msgs/s of the serve phase (5,000 feeds) on the same broker setting, if run. */
  serveRate: number | null;
}): Promise<PassResult> {
  const { fleet, admin, pc } = opts;
  await clearValues(fleet.sql);
  const serve = await startServe({ ...opts.serve, dbUrl: fleet.url, sql: fleet.sql });
  try {
    const rssBefore = await serve.idleRssBytes(IDLE_PAUSE_MS);
    opts.serve.log(`fleet: warm-up pass, each of ${fleet.feeds} feeds once`);
    const warmUpPc = { ...pc, topicsFile: fleet.warmUpTopicsFile, count: fleet.feeds };
    const warmUp = await passWithLookups(serve, warmUpPc, admin, fleet);
    const rssWarm = await serve.idleRssBytes(IDLE_PAUSE_MS);
    await clearValues(fleet.sql);
    opts.serve.log(`fleet: measured pass, ${pc.count} messages over the warmed fleet`);
    const measuredPc = { ...pc, topicsFile: fleet.measuredTopicsFile };
    const measured = await passWithLookups(serve, measuredPc, admin, fleet);
    const rssAfter = await serve.idleRssBytes(IDLE_PAUSE_MS);
    const w = warmUp.result;
    return {
      ...measured.result,
      extra: {
        feeds: fleet.feeds,
        ratioToServe: opts.serveRate ? measured.result.perSecond / opts.serveRate : null,
        feedCacheBytesPerFeed: Math.round((rssWarm - rssBefore) / fleet.feeds),
        idleRssMb: { beforeWarmUp: mb(rssBefore), afterWarmUp: mb(rssWarm), end: mb(rssAfter) },
        feedLookups: {
          warmUp: warmUp.lookups,
          warmUpBatches: warmUp.batches,
          measured: measured.lookups,
          measuredBatches: measured.batches,
          warmUpProbes: warmUp.probes,
          measuredProbes: measured.probes,
        },
        postgresBackendUsPerRow: measured.backendUsPerRow,
        walBytesPerRow: measured.wal?.bytesPerRow ?? null,
        walFpiPerRow: measured.wal?.fpiPerRow ?? null,
        warmUp: {
          stored: w.messages,
          seconds: w.seconds,
          perSecond: w.perSecond,
          lost: w.lost,
          p99Ms: w.p99Ms,
          cpuUsPerMessage: w.cpuUsPerMessage,
        },
        ...measured.result.extra,
      },
    };
  } finally {
    await serve.stop();
  }
}

/**
 * Upkeep of the range partitions of `feed_values` (sql/006_partition_feed_values.sql):
 * partitions are created ahead of time, so no insert waits for one; with a retention,
 * whole partitions older than it are dropped, never rows one by one; and readings that
 * landed in the default partition (no range partition takes them: a device clock in
 * 2001, or upkeep that did not run) are reported.
 *
 * New partitions continue from the end of the last one, each up to the next boundary of
 * the interval (UTC), so changing `--partition-interval` never makes ranges overlap. A
 * new range whose rows already sit in the default partition (PostgreSQL refuses to
 * create such a partition) has them moved into it in the same transaction.
 *
 * `migrate` runs `maintainPartitions` once, `serve` at start and then periodically. Every
 * run takes a transaction-scoped advisory lock, so instances (and PgBouncer in
 * transaction mode) do not get in each other's way; with `upkeep: false` (pg_partman
 * keeps the partitions) only the default partition is watched.
 */
import type postgres from "postgres";
import type { Logger } from "../log.ts";
import { Counter, Gauge, type Registry } from "../prometheus.ts";
import { applyRollupRetention, type RollupTier } from "./rollups.ts";
import { confirmedTransaction } from "./transaction.ts";

/** Length of one partition. */
export type PartitionInterval = "day" | "week" | "month" | "year";

/** The partition intervals there are, for the option's schema. */
export const PARTITION_INTERVALS = ["day", "week", "month", "year"] as const;

/** How partitions are kept. */
export interface PartitionOptions {
  interval: PartitionInterval;
  /** Partitions kept ready after the one holding now. */
  premake: number;
  /** Partitions whose whole range is older than this many ms are dropped (null: keep). */
  retentionMs: number | null;
  /** false: leave creating and dropping to someone else (pg_partman). */
  upkeep: boolean;
  /** Rollup buckets deleted by age, per width (`--retention 1h=2y`, src/db/rollups.ts). */
  rollupRetention?: readonly RollupTier[];
}

/** One partition of `feed_values`. */
export interface Partition {
  name: string;
  /** null for the default partition (and for MINVALUE / MAXVALUE bounds). */
  from: Date | null;
  to: Date | null;
  isDefault: boolean;
}

/** What one upkeep run did. */
export interface UpkeepResult {
  created: string[];
  dropped: string[];
  /** Rows moved out of the default partition into a partition made for them. */
  moved: number;
  /** Rollup rows deleted by their tier's retention. */
  rollupsDeleted: number;
}

const PARENT = "feed_values";
// Next to migrate.ts's 7_300_412_001.
export const UPKEEP_LOCK_KEY = 7_300_412_002;
// A partition is not created for more than this many intervals in one run.
const MAX_NEW_PARTITIONS = 500;

/** The start (UTC) of the interval holding `t`. */
export function periodStart(t: Date, interval: PartitionInterval): Date {
  const y = t.getUTCFullYear(), mo = t.getUTCMonth(), d = t.getUTCDate();
  switch (interval) {
    case "year":
      return new Date(Date.UTC(y, 0, 1));
    case "month":
      return new Date(Date.UTC(y, mo, 1));
    case "week": // ISO weeks start on Monday, like date_trunc('week', ...)
      return new Date(Date.UTC(y, mo, d - ((t.getUTCDay() + 6) % 7)));
    case "day":
      return new Date(Date.UTC(y, mo, d));
  }
}

/** The start of the interval after the one holding `t`. */
export function nextBoundary(t: Date, interval: PartitionInterval): Date {
  const s = periodStart(t, interval);
  const y = s.getUTCFullYear(), mo = s.getUTCMonth(), d = s.getUTCDate();
  switch (interval) {
    case "year":
      return new Date(Date.UTC(y + 1, 0, 1));
    case "month":
      return new Date(Date.UTC(y, mo + 1, 1));
    case "week":
      return new Date(Date.UTC(y, mo, d + 7));
    case "day":
      return new Date(Date.UTC(y, mo, d + 1));
  }
}

/** `feed_values_p20260101`: the naming pg_partman 5 uses too. */
export function partitionName(from: Date): string {
  return `${PARENT}_p${from.toISOString().slice(0, 10).replaceAll("-", "")}`;
}

/** The partitions of `feed_values`, range ones by start, the default one last. */
export async function listPartitions(
  sql: postgres.Sql | postgres.TransactionSql,
): Promise<Partition[]> {
  const rows = await sql<Partition[]>`
    select c.relname as name,
           (regexp_match(b.bound, ${"FROM \\('([^']+)'\\)"}))[1]::timestamptz as from,
           (regexp_match(b.bound, ${"TO \\('([^']+)'\\)"}))[1]::timestamptz as to,
           b.bound = 'DEFAULT' as "isDefault"
    from pg_inherits i
    join pg_class c on c.oid = i.inhrelid
    cross join lateral (select pg_get_expr(c.relpartbound, c.oid) as bound) b
    where i.inhparent = ${PARENT}::regclass
    order by 2 nulls last`;
  return rows;
}

/** Is `feed_values` partitioned (sql/006 applied)? */
export async function isPartitioned(sql: postgres.Sql): Promise<boolean> {
  const [row] = await sql<{ partitioned: boolean }[]>`
    select exists (select 1 from pg_partitioned_table p
                   where p.partrelid = to_regclass(${PARENT})) as partitioned`;
  return row.partitioned;
}

/**
 * Creates the partitions missing up to `premake` intervals after now, moving any rows the
 * default partition holds for them, and drops those past the retention. One transaction.
 */
export async function maintainPartitions(
  sql: postgres.Sql,
  opts: PartitionOptions,
  now = new Date(),
): Promise<UpkeepResult> {
  const result: UpkeepResult = { created: [], dropped: [], moved: 0, rollupsDeleted: 0 };
  // Rollups are ours to keep even when pg_partman keeps the partitions.
  for (const r of await applyRollupRetention(sql, opts.rollupRetention ?? [], now)) {
    result.rollupsDeleted += r.deleted;
  }
  if (!opts.upkeep || !(await isPartitioned(sql))) return result;
  // What it reports created or dropped, PostgreSQL confirmed (src/db/transaction.ts).
  await confirmedTransaction(sql, async (tx) => {
    await tx`select pg_advisory_xact_lock(${UPKEEP_LOCK_KEY})`;
    // Creating or dropping a partition locks feed_values; rather than make inserts queue
    // behind a lock we wait for, give up and try again next time.
    await tx`set local lock_timeout = '10s'`;
    const parts = await listPartitions(tx);
    const ranges = parts.filter((p) => p.to !== null);
    const defaultPart = parts.find((p) => p.isDefault)?.name ?? null;
    const target = (() => {
      let t = nextBoundary(now, opts.interval);
      for (let i = 0; i < opts.premake; i++) t = nextBoundary(t, opts.interval);
      return t;
    })();
    let from = ranges.length > 0
      ? new Date(Math.max(...ranges.map((p) => p.to!.getTime())))
      : periodStart(now, opts.interval);
    while (from < target && result.created.length < MAX_NEW_PARTITIONS) {
      const to = nextBoundary(from, opts.interval);
      const name = partitionName(from);
      result.moved += await createPartition(tx, name, from, to, defaultPart);
      result.created.push(name);
      from = to;
    }
    if (opts.retentionMs !== null) {
      const cutoff = now.getTime() - opts.retentionMs;
      for (const p of ranges) {
        if (p.to!.getTime() > cutoff) continue;
        await tx.unsafe(`drop table ${quoteIdent(p.name)}`);
        result.dropped.push(p.name);
      }
    }
  });
  return result;
}

/** Creates one range partition, moving the default partition's rows of its range into it. */
export async function createPartition(
  tx: postgres.TransactionSql,
  name: string,
  from: Date,
  to: Date,
  defaultPart: string | null,
): Promise<number> {
  let moved = 0;
  if (defaultPart !== null) {
    // PostgreSQL refuses a new partition while the default one holds rows of its range:
    // take them out first, put them back through the parent once the partition exists.
    const [{ n }] = await tx<{ n: number }[]>`
      select count(*)::int as n from ${tx(defaultPart)}
      where created_at >= ${from} and created_at < ${to}`;
    if (n > 0) {
      await tx`create temporary table feedline_moving on commit drop as
               with gone as (delete from ${tx(defaultPart)}
                             where created_at >= ${from} and created_at < ${to} returning *)
               select * from gone`;
      moved = n;
    }
  }
  await tx.unsafe(
    `create table ${quoteIdent(name)} partition of ${PARENT} ` +
      `for values from ('${from.toISOString()}') to ('${to.toISOString()}')`,
  );
  if (moved > 0) {
    await tx`insert into feed_values select * from feedline_moving`;
    await tx`drop table feedline_moving`;
  }
  return moved;
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Readings found in the default partition since the last look. */
export interface DefaultPartitionReport {
  /** Rows in the default partition now. */
  total: number;
  /** Rows that arrived since the last look, with the feeds they belong to. */
  arrived: number;
  feeds: { feedId: number; rows: number; earliest: Date; latest: Date }[];
}

/**
 * Watches the default partition: how many rows it holds, and which arrived (by
 * `received_at`) after `since`. Null when feed_values has no default partition.
 */
export async function inspectDefaultPartition(
  sql: postgres.Sql,
  since: Date | null,
): Promise<(DefaultPartitionReport & { until: Date | null }) | null> {
  const parts = await listPartitions(sql);
  const def = parts.find((p) => p.isDefault);
  if (!def) return null;
  const [{ total, until }] = await sql<{ total: number; until: Date | null }[]>`
    select count(*)::int as total, max(received_at) as until from ${sql(def.name)}`;
  const rows = await sql<
    { feed_id: string; rows: number; earliest: Date; latest: Date }[]
  >`
    select feed_id, count(*)::int as rows, min(created_at) as earliest, max(created_at) as latest
    from ${sql(def.name)}
    where ${since === null ? sql`true` : sql`received_at > ${since}`}
    group by feed_id order by rows desc, feed_id limit 20`;
  const [{ arrived }] = await sql<{ arrived: number }[]>`
    select count(*)::int as arrived from ${sql(def.name)}
    where ${since === null ? sql`true` : sql`received_at > ${since}`}`;
  return {
    total,
    until,
    arrived,
    feeds: rows.map((r) => ({
      feedId: Number(r.feed_id),
      rows: r.rows,
      earliest: r.earliest,
      latest: r.latest,
    })),
  };
}

/** Runs upkeep once and logs what it did; for `migrate` and the start of `serve`. */
export async function runPartitionUpkeep(
  sql: postgres.Sql,
  opts: PartitionOptions,
  log: Logger,
): Promise<UpkeepResult> {
  const r = await maintainPartitions(sql, opts);
  logUpkeep(r, log);
  return r;
}

function logUpkeep(r: UpkeepResult, log: Logger): void {
  if (r.created.length > 0) {
    log.info("feed_values partitions created", { partitions: r.created });
  }
  if (r.moved > 0) {
    log.warn("moved readings out of the default partition into their new partition", {
      rows: r.moved,
    });
  }
  if (r.dropped.length > 0) {
    log.info("feed_values partitions dropped (retention)", { partitions: r.dropped });
  }
  if (r.rollupsDeleted > 0) log.info("rollups deleted (retention)", { rows: r.rollupsDeleted });
}

/**
 * `serve`'s partition upkeep: every `intervalMs`, keep partitions ahead and apply the
 * retention (unless upkeep is off), and report readings that landed in the default
 * partition: a warning per look that finds new ones, naming the feeds and times, and
 * the metrics `feedline_default_partition_rows` and
 * `feedline_readings_default_partition_total`. Returns a stop function.
 */
export function startPartitionUpkeep(
  sql: postgres.Sql,
  opts: PartitionOptions & { intervalMs: number },
  log: Logger,
  registry: Registry,
): () => Promise<void> {
  const rowsGauge = registry.add(
    new Gauge(
      "feedline_default_partition_rows",
      "Rows in the default partition of feed_values (readings no range partition takes).",
    ),
  );
  const arrivedCounter = registry.add(
    new Counter(
      "feedline_readings_default_partition_total",
      "Readings seen arriving in the default partition of feed_values since start.",
    ),
  );
  const failures = registry.add(
    new Counter(
      "feedline_partition_upkeep_errors_total",
      "Partition upkeep runs (create ahead, retention, default partition check) that failed.",
    ),
  );
  let since: Date | null = null;
  let first = true;
  let running: Promise<void> | null = null;
  const tick = () => {
    if (running) return;
    running = (async () => {
      logUpkeep(await maintainPartitions(sql, opts), log);
      const report = await inspectDefaultPartition(sql, since);
      if (!report) return;
      rowsGauge.set(report.total);
      if (first) {
        first = false;
        if (report.total > 0) {
          log.warn("the default partition of feed_values holds readings", {
            rows: report.total,
            feeds: describeFeeds(report),
            note: "no range partition covers their created_at; see docs/scaling.md",
          });
        }
      } else if (report.arrived > 0) {
        arrivedCounter.inc(undefined, report.arrived);
        log.warn("readings landed in the default partition of feed_values", {
          rows: report.arrived,
          feeds: describeFeeds(report),
          interval_s: Math.round(opts.intervalMs / 1000),
        });
      }
      since = report.until ?? since;
    })().catch((error) => {
      failures.inc();
      log.warn("partition upkeep failed; will retry", { error: (error as Error).message });
    }).finally(() => running = null);
  };
  const timer = setInterval(tick, opts.intervalMs);
  tick();
  return async () => {
    clearInterval(timer);
    await running;
  };
}

function describeFeeds(r: DefaultPartitionReport): string[] {
  return r.feeds.map((f) =>
    `feed ${f.feedId}: ${f.rows} row(s), created_at ${f.earliest.toISOString()}` +
    (f.rows > 1 ? ` .. ${f.latest.toISOString()}` : "")
  );
}

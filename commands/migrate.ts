/**
 * `feedline migrate`: apply pending `sql/` migrations, or list them with `--status`.
 * Safe to run from several processes at once (advisory lock, one transaction per file).
 */
import {
  databaseOptions,
  databaseUrlFrom,
  logOptions,
  partitionOptions,
  partitionSettingsOf,
} from "../src/cli/option_groups.ts";
import { maintainPartitions, nextBoundary } from "../src/db/partitions.ts";
import { MAX_COVER_PARTITIONS, PartitionCover } from "../src/db/partition_cover.ts";
import { openCommandDatabase } from "../src/db/command_database.ts";
import { FeedlineError } from "../src/errors.ts";
import { applyMigrations, migrationStatus } from "../src/db/migrate.ts";
import { formatOptionsHelp, option, resolveOptions, zs } from "../src/cli/options.ts";
import { z } from "zod";

/** Options of `migrate`. */
export const migrateOptions = {
  status: option({
    flag: "status",
    schema: zs.bool().default(false),
    defaultText: "off",
    doc: "List applied and pending migrations instead of applying them.",
    boolean: true,
  }),
  partitionsFrom: option({
    flag: "partitions-from",
    schema: z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/, "a month, YYYY-MM").optional(),
    defaultText: "none",
    doc: "Also create the feed_values partitions from this month (YYYY-MM, UTC) up to now, " +
      "for a planned backfill.",
  }),
  ...databaseOptions,
  ...partitionOptions,
  verbose: logOptions.verbose,
};

/** Parses flags and environment. Pure. */
export function parseMigrateArgs(args: string[], env: Record<string, string | undefined>) {
  const { values, positionals, sources } = resolveOptions(migrateOptions, args, env, "migrate");
  if (positionals.length > 0) {
    throw new FeedlineError("USAGE", `migrate takes no arguments (got "${positionals[0]}")`);
  }
  return { ...values, databaseUrlFrom: databaseUrlFrom(sources.databaseUrl) };
}

/** Help text of `migrate`. */
export const help = `feedline migrate — apply the sql/ migrations

Usage: feedline migrate [--status] [--partitions-from YYYY-MM] [options]

Options (flag, [environment variable], default):
${formatOptionsHelp(migrateOptions)}
`;

/** Runs `migrate`; prints what it did. */
export async function run(args: string[]): Promise<void> {
  const config = parseMigrateArgs(args, Deno.env.toObject());
  const db = await openCommandDatabase(config, {
    poolSize: 2,
    migrate: false,
    command: "feedline migrate",
  });
  try {
    if (config.status) {
      const status = await migrationStatus(db.sql);
      console.log(`database: ${db.where}`);
      for (const m of status.applied) {
        const changed = status.changed.includes(m.name) ? "  CHANGED since applied" : "";
        console.log(`applied  ${m.name}  ${m.appliedAt?.toISOString()}${changed}`);
      }
      for (const m of status.pending) console.log(`pending  ${m.name}`);
      if (status.applied.length + status.pending.length === 0) console.log("no migrations");
      return;
    }
    const { applied } = await applyMigrations(db.sql);
    console.log(
      applied.length === 0
        ? `database is up to date (${db.where})`
        : `applied ${applied.join(", ")} (${db.where})`,
    );
    // Partitions ahead of time, so serve's first inserts find theirs (src/db/partitions.ts).
    const upkeep = await maintainPartitions(db.sql, partitionSettingsOf(config));
    if (upkeep.created.length > 0) console.log(`partitions created: ${upkeep.created.join(", ")}`);
    if (upkeep.moved > 0) console.log(`rows moved out of the default partition: ${upkeep.moved}`);
    if (upkeep.dropped.length > 0) {
      console.log(`partitions dropped (retention): ${upkeep.dropped.join(", ")}`);
    }
    if (config.partitionsFrom) await partitionsFrom(db.sql, config.partitionsFrom, config);
    if (upkeep.rollupsDeleted > 0) {
      console.log(`rollups deleted (retention): ${upkeep.rollupsDeleted}`);
    }
  } finally {
    await db.close();
  }
}

/**
 * `--partitions-from YYYY-MM`: a partition for every interval from that month to now
 * that none covers yet (src/db/partition_cover.ts), so a backfill lands in them.
 */
async function partitionsFrom(
  sql: Parameters<typeof maintainPartitions>[0],
  month: string,
  config: ReturnType<typeof parseMigrateArgs>,
): Promise<void> {
  const settings = partitionSettingsOf(config);
  if (!settings.upkeep) {
    throw new FeedlineError(
      "CONFIG_INVALID",
      "--partitions-from creates partitions, and --partition-upkeep is off; turn it on, " +
        "or create them with pg_partman",
    );
  }
  const times: number[] = [];
  const now = Date.now();
  for (
    let t = new Date(`${month}-01T00:00:00Z`);
    t.getTime() < now;
    t = nextBoundary(t, settings.interval)
  ) {
    times.push(t.getTime());
  }
  if (times.length > MAX_COVER_PARTITIONS) {
    throw new FeedlineError(
      "CONFIG_INVALID",
      `--partitions-from ${month} spans ${times.length} ${settings.interval}s; at most ` +
        `${MAX_COVER_PARTITIONS} are created per run: give a later month, or a longer ` +
        "--partition-interval",
    );
  }
  const r = await new PartitionCover(settings).ensure(sql, times);
  console.log(
    r.created.length === 0
      ? `partitions from ${month}: all there`
      : `partitions created from ${month}: ${r.created.join(", ")}`,
  );
  if (r.moved > 0) console.log(`rows moved out of the default partition: ${r.moved}`);
  if (r.skipped > 0) console.log(`not created (older than --retention): ${r.skipped}`);
}

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
import { maintainPartitions } from "../src/db/partitions.ts";
import { openDatabase } from "../src/db/database.ts";
import { databaseUrlOrRunningServe } from "../src/embedded/endpoints.ts";
import { FeedlineError } from "../src/errors.ts";
import { applyMigrations, migrationStatus } from "../src/db/migrate.ts";
import { formatOptionsHelp, option, resolveOptions, zs } from "../src/cli/options.ts";

/** Options of `migrate`. */
export const migrateOptions = {
  status: option({
    flag: "status",
    schema: zs.bool().default(false),
    defaultText: "off",
    doc: "List applied and pending migrations instead of applying them.",
    boolean: true,
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

Usage: feedline migrate [--status] [options]

Options (flag, [environment variable], default):
${formatOptionsHelp(migrateOptions)}
`;

/** Runs `migrate`; prints what it did. */
export async function run(args: string[]): Promise<void> {
  const config = parseMigrateArgs(args, Deno.env.toObject());
  // DATABASE_URL, else the embedded database of a serve running on this data directory
  // (one process at a time opens it), else our own embedded one.
  const url = await databaseUrlOrRunningServe(config.databaseUrl, config.dataDir);
  const db = await openDatabase({
    url,
    urlFrom: config.databaseUrl ? config.databaseUrlFrom : `the serve using ${config.dataDir}`,
    dataDir: config.dataDir,
    embeddedPort: config.embeddedDbPort,
    poolSize: 2,
    migrate: false,
    pooler: config.dbPooler,
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
    if (upkeep.rollupsDeleted > 0) {
      console.log(`rollups deleted (retention): ${upkeep.rollupsDeleted}`);
    }
  } finally {
    await db.close();
  }
}

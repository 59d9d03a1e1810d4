/**
 * `feedline rollups --rebuild --since <time>`: recompute `feed_rollups` from the raw
 * readings of a range (docs/operations.md, "Rollups"), e.g. after turning --rollups on
 * for data already stored, adding a width, or a restore. One transaction; serve's batches
 * wait for it (src/db/rollups.ts).
 */
import type postgres from "postgres";
import { z } from "zod";
import { databaseOptions, databaseUrlFrom, logOptions } from "../src/cli/option_groups.ts";
import { formatOptionsHelp, option, resolveOptions, zs } from "../src/cli/options.ts";
import { rollupsOption } from "../src/cli/rollup_options.ts";
import { openCommandDatabase } from "../src/db/command_database.ts";
import { sqlStateOf } from "../src/db/errors.ts";
import { listPartitions } from "../src/db/partitions.ts";
import { rebuildRollups, rollupWidthsStored } from "../src/db/rollups.ts";
import { FeedlineError } from "../src/errors.ts";

const DURATION_MS = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** An ISO 8601 time, or a duration before now (`7d`, `12h`); null if neither. */
export function parseSince(text: string, now = new Date()): Date | null {
  const t = text.trim();
  const m = /^(\d+)(m|h|d|w)$/.exec(t);
  if (m) return new Date(now.getTime() - Number(m[1]) * DURATION_MS[m[2] as "m"]);
  if (!/^\d{4}-\d{2}-\d{2}/.test(t)) return null;
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? null : d;
}

const timeSchema = (required: boolean) =>
  z.string().optional().transform((v, ctx) => {
    if (v === undefined) {
      if (!required) return null;
      ctx.addIssue({ code: "custom", message: "needed: a time (2026-11-01) or an age (7d)" });
      return z.NEVER;
    }
    const d = parseSince(v);
    if (!d) {
      ctx.addIssue({ code: "custom", message: "a time (2026-11-01T00:00Z) or an age (7d, 12h)" });
      return z.NEVER;
    }
    return d;
  });

/** Options of `rollups`. */
export const rollupsOptions = {
  rebuild: option({
    flag: "rebuild",
    schema: zs.bool().default(false),
    defaultText: "off",
    doc: "Recompute the rollups of the range from feed_values (the only action so far).",
    boolean: true,
  }),
  since: option({
    flag: "since",
    schema: timeSchema(true),
    defaultText: "none (required)",
    doc: "Start of the range: a time (2026-11-01, 2026-11-01T06:00Z) or an age (7d, 12h); " +
      "from the bucket holding it.",
  }),
  until: option({
    flag: "until",
    schema: timeSchema(false),
    defaultText: "no end",
    doc: "End of the range (its bucket included); same forms as --since.",
  }),
  rollups: option({
    flag: rollupsOption.flag,
    env: rollupsOption.env,
    schema: rollupsOption.schema,
    defaultText: "the widths feed_rollups holds",
    doc: "Widths to rebuild, e.g. 1m,1h,1d.",
  }),
  ...databaseOptions,
  verbose: logOptions.verbose,
};

/** Parses flags and environment. Pure. */
export function parseRollupsArgs(args: string[], env: Record<string, string | undefined>) {
  const { values, positionals, sources } = resolveOptions(rollupsOptions, args, env, "rollups");
  if (positionals.length > 0) {
    throw new FeedlineError("USAGE", `rollups takes no arguments (got "${positionals[0]}")`);
  }
  if (!values.rebuild) {
    throw new FeedlineError("USAGE", "rollups: say what to do: --rebuild --since <time>");
  }
  return { ...values, since: values.since!, databaseUrlFrom: databaseUrlFrom(sources.databaseUrl) };
}

/** Help text of `rollups`. */
export const help = `feedline rollups — recompute feed_rollups from the raw readings

Usage: feedline rollups --rebuild --since <time> [--until <time>] [--rollups 1m,1h] [options]

Options (flag, [environment variable], default):
${formatOptionsHelp(rollupsOptions)}
`;

/** Runs `rollups --rebuild`; prints what it did per width. */
export async function run(args: string[]): Promise<void> {
  const config = parseRollupsArgs(args, Deno.env.toObject());
  const db = await openCommandDatabase(config, {
    poolSize: 2,
    migrate: false,
    command: "feedline rollups",
  });
  try {
    await rebuild(db.sql, config);
  } catch (error) {
    if (sqlStateOf(error) !== "42P01") throw error; // undefined_table
    throw new FeedlineError(
      "SCHEMA_NOT_READY",
      `${db.where} has no feed_rollups or rollup_folds (sql/011, sql/015): run ` +
        "`feedline migrate` first",
    );
  } finally {
    await db.close();
  }
}

/** Rebuilds the widths asked for (or those the table holds) and prints what it did. */
async function rebuild(sql: postgres.Sql, config: ReturnType<typeof parseRollupsArgs>) {
  const widths = config.rollups?.map((w) => w.interval) ?? await rollupWidthsStored(sql);
  if (widths.length === 0) {
    throw new FeedlineError(
      "CONFIG_INVALID",
      "feed_rollups holds no width yet: name the widths to build with --rollups 1m,1h,1d",
    );
  }
  const ranges = (await listPartitions(sql)).filter((p) => !p.isDefault && p.from !== null);
  const oldest = ranges.length > 0 ? ranges[0].from : null;
  const results = await rebuildRollups(sql, widths, config.since, config.until, oldest);
  const labels = new Map(config.rollups?.map((w) => [w.interval, w.label]));
  for (const r of results) {
    const width = labels.get(r.interval) ?? r.interval;
    console.log(
      `rollups ${width}: rebuilt from ${r.from.toISOString()}: ${r.deleted} row(s) replaced ` +
        `by ${r.written}` +
        (r.foldedFrom
          ? ` (buckets from ${r.foldedFrom.toISOString()} are folded from the finer width)`
          : ""),
    );
  }
}

/**
 * What the statement-level benches share (bench/last_values_cost.ts,
 * bench/fleet_statements.ts, bench/rollups_cost.ts): a migrated scratch database of their
 * own on the given server, dropped afterwards, and what `EXPLAIN (ANALYZE, BUFFERS, WAL)`
 * says one statement did.
 */
import { parseArgs } from "node:util";
import postgres from "postgres";
import { applyMigrations } from "../src/db/migrate.ts";

/**
 * Creates a database named `<prefix>_<random>` on the server of `adminUrl`, migrates it,
 * runs `fn` with a one-connection pool on it, then drops it (unless `keep`).
 */
export async function withScratchDatabase<T>(
  adminUrl: string,
  prefix: string,
  fn: (sql: postgres.Sql, name: string) => Promise<T>,
  opts: { keep?: boolean; log?: (msg: string) => void } = {},
): Promise<T> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  const name = `${prefix}_${crypto.randomUUID().replaceAll("-", "").slice(0, 8)}`;
  await admin`create database ${admin(name)}`;
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const sql = postgres(url.href, { max: 1, onnotice: () => {} });
  try {
    await applyMigrations(sql);
    return await fn(sql, name);
  } finally {
    await sql.end();
    if (opts.keep) opts.log?.(`kept ${name}`);
    else await admin`drop database if exists ${admin(name)} with (force)`;
    await admin.end();
  }
}

/**
 * Prefix a statement with this and read its result with `workOf`: the statement's own
 * buffers and WAL (the pages it found in shared_buffers or read, the WAL it wrote,
 * full-page images included), free of what other clients of a shared server do.
 */
export const EXPLAIN = "explain (analyze, buffers, wal, format json)";

/** What one statement's plan says it did. */
export interface Work {
  hit: number;
  read: number;
  walBytes: number;
  walFpi: number;
}

export function workOf(result: postgres.RowList<postgres.Row[]>): Work {
  const plan = (result[0]["QUERY PLAN"] as { Plan: Record<string, number> }[])[0].Plan;
  return {
    hit: plan["Shared Hit Blocks"] ?? 0,
    read: plan["Shared Read Blocks"] ?? 0,
    walBytes: plan["WAL Bytes"] ?? 0,
    walFpi: plan["WAL FPI"] ?? 0,
  };
}

/** `--feeds`, `--rounds`, `--batch` and `--database-url` (default DATABASE_URL, else local). */
export function statementBenchArgs(
  defaults: { feeds: number; rounds: number; batch: number },
  argv = Deno.args,
): { feeds: number; rounds: number; batch: number; databaseUrl: string } {
  const { values } = parseArgs({
    args: argv,
    options: {
      feeds: { type: "string", default: String(defaults.feeds) },
      rounds: { type: "string", default: String(defaults.rounds) },
      batch: { type: "string", default: String(defaults.batch) },
      "database-url": {
        type: "string",
        default: Deno.env.get("DATABASE_URL") ?? "postgres://root@127.0.0.1:5432/postgres",
      },
    },
  });
  return {
    feeds: Number(values.feeds),
    rounds: Number(values.rounds),
    batch: Number(values.batch),
    databaseUrl: values["database-url"],
  };
}

/**
 * Applies the `sql/` migrations: each file once, in name order, each in its own
 * transaction, under a PostgreSQL advisory lock so that many instances can start at once.
 * An applied file whose checksum changed stops everything: the schema on disk no longer
 * describes the database, and guessing would be worse than asking.
 */
import type postgres from "postgres";
import { BUNDLED_MIGRATIONS } from "./bundled_migrations.ts";
import { FeedlineError } from "../errors.ts";
import { isLostPreparedStatement } from "./pooler.ts";
import { confirmedTransaction } from "./transaction.ts";

/** Default folder of migration files, next to this module. */
export const DEFAULT_MIGRATIONS_DIR = new URL("../../sql/", import.meta.url);

// Arbitrary but fixed: every feedline process contends for the same lock.
const MIGRATION_LOCK_KEY = 7_300_412_001;
const RETRY = Symbol("retry");

/** One migration file. */
export interface MigrationFile {
  version: number;
  name: string;
  checksum: string;
  sql: string;
}

/** A migration as recorded or pending. */
export interface MigrationState {
  version: number;
  name: string;
  appliedAt: Date | null;
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Reads `NNN_name.sql` files from `dir`, sorted by version. */
export async function readMigrations(dir: string | URL = DEFAULT_MIGRATIONS_DIR): Promise<
  MigrationFile[]
> {
  const files: MigrationFile[] = [];
  for (const [name, text] of await readSqlFiles(dir)) {
    const match = /^(\d+)_(.+)\.sql$/.exec(name);
    if (!match) continue;
    files.push({
      version: Number(match[1]),
      name,
      checksum: await sha256(text),
      sql: text,
    });
  }
  files.sort((a, b) => a.version - b.version);
  for (let i = 1; i < files.length; i++) {
    if (files[i].version === files[i - 1].version) {
      throw new FeedlineError(
        "MIGRATION_FAILED",
        `two migrations share version ${files[i].version}: ${files[i - 1].name} and ${
          files[i].name
        }`,
      );
    }
  }
  return files;
}

/** The `.sql` files of `dir`, or the bundled ones when running as a bundle. */
async function readSqlFiles(dir: string | URL): Promise<[string, string][]> {
  if (BUNDLED_MIGRATIONS && dir === DEFAULT_MIGRATIONS_DIR) {
    return Object.entries(BUNDLED_MIGRATIONS);
  }
  const out: [string, string][] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isFile || !entry.name.endsWith(".sql")) continue;
    out.push([entry.name, await Deno.readTextFile(new URL(entry.name, toDirUrl(dir)))]);
  }
  return out;
}

function toDirUrl(dir: string | URL): URL {
  if (dir instanceof URL) return dir.href.endsWith("/") ? dir : new URL(dir.href + "/");
  const absolute = dir.startsWith("/") ? dir : `${Deno.cwd()}/${dir}`;
  return new URL(`file://${absolute.endsWith("/") ? absolute : absolute + "/"}`);
}

async function ensureMigrationsTable(sql: postgres.TransactionSql): Promise<void> {
  await sql`
    create table if not exists schema_migrations (
      version integer primary key,
      name text not null,
      checksum text not null,
      applied_at timestamptz not null default now()
    )`;
}

type Applied = { version: number; name: string; checksum: string; applied_at: Date };

function checkUnchanged(files: MigrationFile[], applied: Applied[]): void {
  const byVersion = new Map(files.map((f) => [f.version, f]));
  for (const row of applied) {
    const file = byVersion.get(row.version);
    if (file && file.checksum !== row.checksum) {
      throw new FeedlineError(
        "MIGRATION_CHANGED",
        `migration ${file.name} was changed after it was applied (checksum differs); ` +
          `restore the original file and add a new migration for the change`,
      );
    }
  }
}

/**
 * Applies every pending migration and returns the names applied now.
 *
 * @example
 * ```ts
 * const { applied } = await applyMigrations(sql);
 * ```
 */
export async function applyMigrations(
  sql: postgres.Sql,
  opts: { dir?: string | URL } = {},
): Promise<{ applied: string[] }> {
  const files = await readMigrations(opts.dir);
  const appliedNow: string[] = [];
  // Each file runs in its own transaction that first takes a transaction-scoped advisory
  // lock: a second process waits there, then sees the file recorded and moves on.
  let retried = false;
  for (;;) {
    // Confirmed by PostgreSQL, or it is not reported as applied (src/db/transaction.ts).
    const next = await confirmedTransaction(sql, async (tx) => {
      await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`;
      await ensureMigrationsTable(tx);
      const applied = await tx<Applied[]>`
        select version, name, checksum, applied_at from schema_migrations order by version`;
      checkUnchanged(files, applied);
      const done = new Set(applied.map((a) => a.version));
      const file = files.find((f) => !done.has(f.version));
      if (!file) return null;
      try {
        await tx.unsafe(file.sql);
      } catch (error) {
        throw new FeedlineError(
          "MIGRATION_FAILED",
          `migration ${file.name} failed: ${(error as Error).message}`,
          { cause: error },
        );
      }
      await tx`insert into schema_migrations (version, name, checksum)
               values (${file.version}, ${file.name}, ${file.checksum})`;
      return file.name;
    }).catch((error): typeof RETRY => {
      // Through a transaction pooler not announced with --db-pooler: the pool has just
      // stopped naming statements (src/db/pooler.ts), so the same step is tried again.
      if (!retried && isLostPreparedStatement(error)) return RETRY;
      throw error;
    });
    if (next === RETRY) {
      retried = true;
      continue;
    }
    if (next === null) return { applied: appliedNow };
    appliedNow.push(next);
  }
}

/** Lists applied and pending migrations (for `migrate --status`). */
export async function migrationStatus(
  sql: postgres.Sql,
  opts: { dir?: string | URL } = {},
): Promise<{ applied: MigrationState[]; pending: MigrationState[]; changed: string[] }> {
  const files = await readMigrations(opts.dir);
  const [{ exists }] = await sql<{ exists: boolean }[]>`
    select to_regclass('schema_migrations') is not null as exists`;
  const applied: Applied[] = exists
    ? await sql<Applied[]>`select version, name, checksum, applied_at from schema_migrations
                           order by version`
    : [];
  const byVersion = new Map(files.map((f) => [f.version, f]));
  const done = new Set(applied.map((a) => a.version));
  return {
    applied: applied.map((a) => ({ version: a.version, name: a.name, appliedAt: a.applied_at })),
    pending: files.filter((f) => !done.has(f.version)).map((f) => ({
      version: f.version,
      name: f.name,
      appliedAt: null,
    })),
    changed: applied.filter((a) => {
      const file = byVersion.get(a.version);
      return file !== undefined && file.checksum !== a.checksum;
    }).map((a) => a.name),
  };
}

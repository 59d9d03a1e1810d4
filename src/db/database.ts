/**
 * Opens the database feedline writes to: the one at DATABASE_URL, or the embedded PGlite
 * when none is given. Either way the caller gets a postgres.js client and a `close`.
 */
import postgres from "postgres";
import { lockDataDir } from "../embedded/data_dir_lock.ts";
import { startEmbeddedDatabase } from "../embedded/services.ts";
import { rememberedPort, rememberPort } from "../embedded/remembered_ports.ts";
import { FeedlineError } from "../errors.ts";
import { redactUrl } from "../log.ts";
import { applyMigrations, migrationStatus } from "./migrate.ts";
import { whenTransactionPoolerFound } from "./pooler.ts";
import { explainTlsError, resolvePgTls } from "./tls.ts";
import { maintainPartitions, type PartitionOptions, type UpkeepResult } from "./partitions.ts";

/** What `where` adds about the embedded data directory (src/embedded/initdb_apart.ts). */
const CREATED = {
  existing: "",
  child: " (created, by a child process)",
  here: " (created)",
} as const;

/** An open database. */
export interface Database {
  sql: postgres.Sql;
  /** Where it is, with any password masked: for logs. */
  where: string;
  /** Connection URL (for the embedded database: how other local processes reach it). */
  url: string;
  embedded: boolean;
  /**
   * Where LISTEN for feed changes goes (src/ingest/feed_notify.ts): `sql` is null where it
   * cannot work (the embedded PGlite; a transaction pooler without --listen-database-url);
   * `how` says, for the log, how the feed cache learns of changes.
   */
  listen: { sql: postgres.Sql | null; how: string };
  /** What the partition upkeep at open did (null: not asked for). */
  partitions: UpkeepResult | null;
  /** The embedded database's port was taken and it listens on another (see `url`). */
  fellBack: boolean;
  /**
   * After a fallback, for the log: that it is the port of the last fallback of this data
   * dir (`remembered`), or where the new one was remembered for the next start.
   */
  portMemory?: { remembered: string } | { remembered_in: string };
  /** Ends the pool, waiting at most `timeoutSec` (default 5) for running queries. */
  close(timeoutSec?: number): Promise<void>;
}

/** Options to open a database. */
export interface OpenDatabaseOptions {
  url?: string;
  dataDir: string;
  embeddedPort: number;
  poolSize: number;
  /** Apply pending migrations (always done for the embedded database). */
  migrate: boolean;
  /** `transaction`: the URL is a pooler in transaction mode (no named prepared statements). */
  pooler?: "none" | "transaction";
  /** A direct connection for LISTEN, bypassing the pooler. */
  listenUrl?: string;
  /** After migrating, create partitions ahead and apply retention (src/db/partitions.ts). */
  partitions?: PartitionOptions;
  /** Who opens it, for the data directory's lock (src/embedded/data_dir_lock.ts): "feedline serve". */
  command?: string;
  /** Environment for libpq's PGSSL* variables and ~/.postgresql (default: the process's). */
  env?: Record<string, string | undefined>;
  /**
   * Change nothing (`replay --dry-run`): no data directory or embedded database is
   * created, no migration applied, no partition made. A database without the current
   * schema is refused with one line saying what it needs (SCHEMA_NOT_READY).
   */
  dryRun?: boolean;
  /**
   * Opened to ingest (serve, replay): without migrating, a database whose schema lacks a
   * table batches write is refused at once, in one line (SCHEMA_NOT_READY), not at every
   * batch.
   */
  ingest?: boolean;
  /** Where `url` came from, named in errors (default `DATABASE_URL`): `--database-url`, ... */
  urlFrom?: string;
  /**
   * Gets one line for the log when the database turns out to be a transaction pooler
   * nobody announced (src/db/pooler.ts), also during the migrations at open.
   */
  onTransactionPooler?: (message: string) => void;
}

/** Connects (or starts the embedded database) and checks that the database answers. */
export async function openDatabase(opts: OpenDatabaseOptions): Promise<Database> {
  if (!opts.url) {
    const dir = `${opts.dataDir.replace(/\/$/, "")}/pgdata`;
    if (opts.dryRun && !(await isDirectory(dir))) {
      throw new FeedlineError(
        "SCHEMA_NOT_READY",
        `there is no embedded database in ${dir}, and a dry run creates none; run ` +
          "`feedline migrate` first (or set DATABASE_URL), or drop --dry-run",
      );
    }
    // PGlite has no locking of its own: one process at a time opens the data directory.
    const lock = await lockDataDir(opts.dataDir, opts.command ?? "feedline");
    let embedded;
    try {
      embedded = await startEmbeddedDatabase({
        dataDir: dir,
        port: opts.embeddedPort,
        fallbackPort: rememberedPort(opts.dataDir, "db"),
        // Room for our pool plus a few local tools (simulate --register, psql).
        maxConnections: opts.poolSize + 4,
      });
    } catch (error) {
      await lock.release();
      throw new FeedlineError(
        "EMBEDDED_FAILED",
        `cannot start the embedded database in ${dir}: ${(error as Error).message}; ` +
          `use --data-dir to pick another folder, or set DATABASE_URL`,
        { cause: error },
      );
    }
    const sql = postgres(embedded.url, { max: opts.poolSize, ssl: false, onnotice: () => {} });
    let partitions: UpkeepResult | null = null;
    try {
      if (opts.dryRun) await requireCurrentSchema(sql, `the embedded database in ${dir}`);
      else await applyMigrations(sql);
      if (opts.partitions && !opts.dryRun) {
        partitions = await maintainPartitions(sql, opts.partitions);
      }
    } catch (error) {
      await sql.end({ timeout: 1 }).catch(() => {});
      await embedded.close().catch(() => {});
      await lock.release();
      throw error;
    }
    return {
      sql,
      where: `embedded PostgreSQL (PGlite) at ${embedded.url}, data in ${dir}` +
        CREATED[embedded.started],
      url: embedded.url,
      embedded: true,
      listen: {
        sql: null,
        how: "the embedded PGlite has no LISTEN over its socket: feed changes reach the " +
          "cache at the next check of the change counter (a third of --feed-cache-ttl-ms)",
      },
      partitions,
      fellBack: embedded.fellBack,
      portMemory: embedded.fellBack ? rememberFallback(opts.dataDir, embedded.port) : undefined,
      close: async (timeoutSec = 5) => {
        await sql.end({ timeout: timeoutSec });
        await embedded.close();
        await lock.release();
      },
    };
  }
  const tls = await resolvePgTls(opts.url, opts.env ?? Deno.env.toObject());
  const sql = postgres(tls.url, {
    ssl: tls.ssl,
    max: opts.poolSize,
    onnotice: () => {},
    connect_timeout: 10,
    // Connections are reopened after failures; a long-lived idle one may be cut by
    // middleboxes, so recycle now and then.
    max_lifetime: 60 * 30,
    // A pooler in transaction mode hands each transaction to any server connection, where
    // a statement prepared on another one does not exist.
    ...(opts.pooler === "transaction" ? { prepare: false } : {}),
  });
  if (opts.onTransactionPooler) whenTransactionPoolerFound(sql, opts.onTransactionPooler);
  try {
    await sql`select 1`;
  } catch (error) {
    await sql.end({ timeout: 1 }).catch(() => {});
    throw new FeedlineError(
      "DATABASE_UNREACHABLE",
      `cannot connect to PostgreSQL at ${redactUrl(tls.url)}${
        tls.summary === "sslmode=prefer" ? "" : ` (${tls.summary})`
      }: ` + (
        explainTlsError(error, tls) ??
          `${describePgError(error)}; check ${
            opts.urlFrom ?? "DATABASE_URL"
          } and that the server is running`
      ),
      { cause: error },
    );
  }
  let partitions: UpkeepResult | null = null;
  try {
    if (opts.dryRun) await requireCurrentSchema(sql, `the database at ${redactUrl(tls.url)}`);
    else if (opts.migrate) await applyMigrations(sql);
    else if (opts.ingest) await requireIngestTables(sql, `the database at ${redactUrl(tls.url)}`);
    if (opts.partitions && !opts.dryRun) {
      partitions = await maintainPartitions(sql, opts.partitions);
    }
  } catch (error) {
    await sql.end({ timeout: 1 }).catch(() => {});
    throw error;
  }
  const listen = listenConnection(sql, opts);
  return {
    sql,
    where: `${redactUrl(tls.url)} (${tls.summary})`,
    url: opts.url,
    embedded: false,
    listen,
    partitions,
    fellBack: false,
    close: async (timeoutSec = 5) => {
      if (listen.sql && listen.sql !== sql) await listen.sql.end({ timeout: 1 });
      await sql.end({ timeout: timeoutSec });
    },
  };
}

/**
 * For a dry run, which may not migrate: the database must have every migration already.
 * Throws SCHEMA_NOT_READY (or MIGRATION_CHANGED) saying what `database` needs.
 */
async function requireCurrentSchema(sql: postgres.Sql, database: string): Promise<void> {
  const { applied, pending, changed } = await migrationStatus(sql);
  if (changed.length > 0) {
    throw new FeedlineError(
      "MIGRATION_CHANGED",
      `${database}: migration ${changed[0]} was changed after it was applied (checksum ` +
        "differs); restore the original file",
    );
  }
  if (pending.length === 0) return;
  const n = `${pending.length} migration${pending.length === 1 ? "" : "s"} pending`;
  throw new FeedlineError(
    "SCHEMA_NOT_READY",
    `${database} ${
      applied.length === 0
        ? `has no feedline schema (${n})`
        : `has ${n} (${pending.map((m) => m.name).join(", ")})`
    }` +
      ", and a dry run applies none; run `feedline migrate` first, or drop --dry-run",
  );
}

/**
 * For serve and replay under `--no-migrate`: the newest table batches write must exist
 * (sql/018; the ones before it came with the migrations before it).
 */
async function requireIngestTables(sql: postgres.Sql, database: string): Promise<void> {
  const [{ found }] = await sql<{ found: boolean }[]>`
    select to_regclass('feed_last_values_pending') is not null as found`;
  if (found) return;
  throw new FeedlineError(
    "SCHEMA_NOT_READY",
    `${database} has no feed_last_values_pending (sql/018), which every batch writes: run ` +
      "`feedline migrate` first (or drop --no-migrate)",
  );
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

/**
 * LISTEN needs one session that stays with us; a pooler in transaction mode gives each
 * transaction any server connection, so a LISTEN through it is silently lost.
 */
function listenConnection(sql: postgres.Sql, opts: OpenDatabaseOptions): Database["listen"] {
  if (opts.listenUrl) {
    // One connection, opened lazily by the LISTEN itself.
    const direct = postgres(opts.listenUrl, { max: 1, onnotice: () => {}, connect_timeout: 10 });
    return {
      sql: direct,
      how: `LISTEN/NOTIFY on the direct connection ${redactUrl(opts.listenUrl)} ` +
        `(--listen-database-url): feed changes reach the cache at once`,
    };
  }
  if (opts.pooler === "transaction") {
    return {
      sql: null,
      how: "no LISTEN behind a transaction pooler (--db-pooler transaction): feed changes " +
        "reach the cache at the next check of the change counter (a third of " +
        "--feed-cache-ttl-ms); set " +
        "--listen-database-url to a direct connection to have them at once",
    };
  }
  return { sql, how: "LISTEN/NOTIFY: feed changes reach the cache at once" };
}

/** A one-line description of a postgres.js or socket error. */
export function describePgError(error: unknown): string {
  const e = error as { code?: string; message?: string; errno?: string };
  const message = e?.message ?? String(error);
  return e?.code && !message.includes(e.code) ? `${message} (${e.code})` : message;
}

/** Remembers the embedded database's fallback port for the next start of `dataDir`. */
function rememberFallback(dataDir: string, port: number): Database["portMemory"] {
  if (rememberedPort(dataDir, "db") === port) {
    return { remembered: "the same port as at the last start of this data dir" };
  }
  return { remembered_in: rememberPort(dataDir, "db", port) };
}

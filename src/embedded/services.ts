/**
 * Zero-config services (docs/architecture.md#embedded-services): an aedes MQTT broker and a PGlite
 * database served over the PostgreSQL wire protocol (src/embedded/pglite_server.ts), both
 * on loopback.
 *
 * Facts this module relies on, measured with aedes 1.2, pglite 0.5.14,
 * postgres.js 3.4.9 and Deno 2.9:
 *
 * - aedes 1.2 has no default export (it throws a migration error). The broker is
 *   `await Aedes.createBroker()`: `new Aedes()` alone leaves out `listen()`, which
 *   sets up the persistence that clients need. It speaks MQTT 3.1.1 only.
 *   `broker.close()` clears its two intervals and closes the clients; the TCP
 *   server is ours to close, after the clients are gone.
 * - postgres.js needs no special options: the defaults (`prepare: true`,
 *   `fetch_types: true`) work, including array parameters for `unnest`,
 *   `sql.begin` and `on conflict ... returning`. There is no TLS (an SSLRequest
 *   is answered 'N'), so keep `ssl` off. Prepared statement names are random per
 *   connection, so the one backend that all connections share sees no clash.
 * - All connections share one PGlite backend, so the server lets one connection
 *   at a time use it, from its first message until it has sent a Sync or a
 *   simple Query and is outside BEGIN ... COMMIT. npm pglite-socket 0.2.17,
 *   used before, switched connections between any two messages outside a
 *   transaction block; with the data on disk PGlite's file syncs yield to the
 *   event loop between messages, and `serve` plus a second client failed with
 *   `portal "" does not exist`.
 * - Connections above `maxConnections` get a FATAL ErrorResponse with SQLSTATE
 *   53300 (postgres.js: a PostgresError with `code` "53300"): keep the client's
 *   `max` at or below our `maxConnections`.
 * - COPY FROM STDIN ends PGlite's backend: the wasm program exits with status 1,
 *   every later message throws and the server drops each connection that sends
 *   one. Use `unnest` inserts.
 * - Memory: PostgreSQL's shared buffers live in PGlite's wasm memory in this process, and
 *   all of them are resident from the start: PostgreSQL's 128 MB default made an idle
 *   embedded serve ~90 MB larger than 16 MB does (docs/performance.md, "Memory budget").
 * - Startup: a new PGlite runs initdb, about 2 s, also in memory; reopening a
 *   persisted data directory takes about 0.1 s. The aedes broker starts in
 *   milliseconds.
 *
 * @module
 */

import { mkdir } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { Aedes } from "aedes";
import { PGlite } from "@electric-sql/pglite";
import { type PgliteServer, startPgliteServer } from "./pglite_server.ts";
import type { Logger } from "../log.ts";
import { rememberedPort, rememberPort } from "./remembered_ports.ts";
import { type DataDirStart, initDataDirApart, pgliteStartParams } from "./initdb_apart.ts";

export { EMBEDDED_SHARED_BUFFERS } from "./initdb_apart.ts";

/** A running embedded MQTT broker. */
export interface EmbeddedBroker {
  /** `mqtt://HOST:PORT`, for MQTT 3.1.1 clients (`protocolVersion: 4`). */
  url: string;
  port: number;
  /** True when the requested port was taken and a free one was used instead. */
  fellBack: boolean;
  /** Disconnects the clients and stops listening. */
  close(): Promise<void>;
}

/** Options for {@linkcode startEmbeddedBroker}. */
export interface EmbeddedBrokerOptions {
  /** Interface to bind; default `127.0.0.1`. */
  host?: string;
  /** Port to listen on; 0 picks a free one. Default 1883. */
  port?: number;
  /** Where to say which address it listens on (and that it moved off a taken port). */
  log?: Logger;
  /**
   * The data dir: a port fallen back to is remembered there (ports.json) and tried first on
   * the next start, so it stays the same across restarts.
   */
  dataDir?: string;
}

/**
 * Starts an aedes MQTT 3.1.1 broker. If the port is in use (often a system
 * Mosquitto on 1883) it listens on another instead and sets `fellBack`: the one remembered
 * in `dataDir` if that is free, else a free one, which it remembers.
 *
 * @example
 * ```ts
 * const broker = await startEmbeddedBroker({ port: 0 });
 * console.log(broker.url); // mqtt://127.0.0.1:41234
 * await broker.close();
 * ```
 */
export async function startEmbeddedBroker(
  opts: EmbeddedBrokerOptions = {},
): Promise<EmbeddedBroker> {
  const host = opts.host ?? "127.0.0.1";
  const broker = await Aedes.createBroker();
  const server = createServer(broker.handle);
  const requested = opts.port ?? 1883;
  const remembered = opts.dataDir ? rememberedPort(opts.dataDir, "mqtt") : null;
  let listened: { port: number; fellBack: boolean };
  try {
    listened = await _withFallback(requested, (port) => _listen(server, host, port), remembered);
  } catch (err) {
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    throw err;
  }
  let closing: Promise<void> | undefined;
  const url = `mqtt://${_urlHost(host)}:${listened.port}`;
  if (listened.fellBack) {
    const kept = listened.port === remembered;
    const file = opts.dataDir && !kept ? rememberPort(opts.dataDir, "mqtt", listened.port) : null;
    // Loud: a device or `mosquitto_pub -p 1883` now reaches the other broker, not this one.
    opts.log?.warn(
      `port ${requested} is taken (another MQTT broker?); the embedded broker listens on ` +
        `port ${listened.port} instead: publish to -p ${listened.port}, not ${requested}`,
      {
        url,
        port: listened.port,
        ...(kept ? { remembered: "the same port as at the last start of this data dir" } : {}),
        ...(file ? { remembered_in: file } : {}),
      },
    );
  }
  opts.log?.info("embedded MQTT broker (MQTT 3.1.1) listening", { url });
  return {
    url,
    ...listened,
    close() {
      closing ??= (async () => {
        await new Promise<void>((resolve) => broker.close(() => resolve()));
        await new Promise<void>((resolve) => server.close(() => resolve()));
      })();
      return closing;
    },
  };
}

/** A running embedded PostgreSQL (PGlite behind src/embedded/pglite_server.ts). */
export interface EmbeddedDatabase {
  /** `postgres://postgres@HOST:PORT/postgres`; connect with `ssl: false`. */
  url: string;
  port: number;
  /** The data directory, or null when the database lives in memory. */
  dataDir: string | null;
  /** True when the requested port was taken and a free one was used instead. */
  fellBack: boolean;
  /**
   * How the data directory was ready: it held a database (`existing`), a child process
   * made it (`child`), or this process did (`here`: in memory, or no child could run).
   */
  started: DataDirStart;
  /** Stops listening, closes connections and flushes PGlite to disk. */
  close(): Promise<void>;
}

/** Options for {@linkcode startEmbeddedDatabase}. */
export interface EmbeddedDatabaseOptions {
  /**
   * Where PGlite keeps its files (created if missing). `null` or `"memory://"`
   * keeps the database in memory, for tests.
   */
  dataDir: string | null;
  /** Interface to bind; default `127.0.0.1`. */
  host?: string;
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /** Connections accepted at once; default 4. Clients must not open more. */
  maxConnections?: number;
  /** Told (debug) why a new data directory is made in this process. */
  log?: Logger;
  /** Where to go first when `port` is taken (the port of the last fallback), else a free one. */
  fallbackPort?: number | null;
}

/**
 * Starts PGlite and serves it over the PostgreSQL wire protocol, so that
 * postgres.js reaches it like any server. Falls back to a free port when the
 * requested one is taken.
 *
 * @example
 * ```ts
 * const db = await startEmbeddedDatabase({ dataDir: "./data/pg" });
 * const sql = postgres(db.url, { max: 2, ssl: false });
 * await sql`select 1`;
 * await sql.end();
 * await db.close();
 * ```
 */
export async function startEmbeddedDatabase(
  opts: EmbeddedDatabaseOptions,
): Promise<EmbeddedDatabase> {
  const host = opts.host ?? "127.0.0.1";
  const dataDir = opts.dataDir === "memory://" ? null : opts.dataDir;
  let started: DataDirStart = "here";
  if (dataDir !== null) {
    await mkdir(dataDir, { recursive: true });
    started = await initDataDirApart(
      dataDir,
      (reason) =>
        opts.log?.debug("the embedded database's first start runs in serve's own process", {
          reason,
        }),
    );
  }
  const db = await PGlite.create(dataDir ?? "memory://", { startParams: pgliteStartParams() });
  let server!: PgliteServer;
  let listened: { port: number; fellBack: boolean };
  try {
    listened = await _withFallback(opts.port ?? 0, async (port) => {
      server = await startPgliteServer(db, {
        host,
        port,
        maxConnections: opts.maxConnections ?? 4,
      });
      return server.port;
    }, opts.fallbackPort ?? null);
  } catch (err) {
    await db.close();
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    url: `postgres://postgres@${_urlHost(host)}:${listened.port}/postgres`,
    dataDir,
    ...listened,
    started,
    close() {
      closing ??= (async () => {
        await server.stop();
        await db.close();
      })();
      return closing;
    },
  };
}

/**
 * Runs `listen(port)`; on EADDRINUSE for a fixed port, retries on `next` (a remembered
 * fallback) if given, then on port 0.
 */
async function _withFallback(
  port: number,
  listen: (port: number) => Promise<number>,
  next: number | null = null,
): Promise<{ port: number; fellBack: boolean }> {
  try {
    return { port: await listen(port), fellBack: false };
  } catch (err) {
    if (port === 0 || (err as { code?: string }).code !== "EADDRINUSE") throw err;
    if (next !== null && next !== port) {
      const moved = await _withFallback(next, listen).catch(() => null);
      if (moved) return { port: moved.port, fellBack: true };
    }
    return { port: await listen(0), fellBack: true };
  }
}

function _listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as { port: number }).port);
    });
  });
}

/** IPv6 literals need brackets in a URL. */
function _urlHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

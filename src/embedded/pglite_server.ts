/**
 * Serves one PGlite over the PostgreSQL wire protocol to several TCP clients.
 *
 * PGlite is a single backend: the unnamed prepared statement and portal, the implicit
 * transaction of the extended query protocol and any BEGIN block are shared by every
 * client. PostgreSQL's protocol docs (protocol-flow.html, "Extended Query"): a series of
 * Parse/Bind/Describe/Execute messages ends with Sync, which "causes the backend to close
 * the current transaction if it's not inside a BEGIN/COMMIT transaction block", and "an
 * unnamed portal is destroyed at the end of the transaction, or as soon as the next Bind
 * statement specifying the unnamed portal as destination is issued". So a connection has
 * to own the backend from its first message until it has sent a Sync (or a simple Query,
 * which is a unit of its own) and is outside a transaction block. pglite-socket 0.2.17
 * switches connections between any two messages outside BEGIN ... COMMIT, so one
 * client's Bind could drop another's unnamed portal (`portal "" does not exist`); this
 * server holds a FIFO lock for the whole unit instead.
 *
 * Not supported: TLS (SSLRequest and GSSENCRequest are answered 'N'), query cancellation
 * (a CancelRequest is read and dropped), COPY FROM STDIN. A client that stops halfway
 * through a unit, without Sync, blocks the other connections until it goes on or away.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createServer, type Socket } from "node:net";
import type { PGlite } from "@electric-sql/pglite";

/** A running server. */
export interface PgliteServer {
  port: number;
  /** Stops listening, drops every connection (undoing its open work) and waits for that. */
  stop(): Promise<void>;
}

/** Options for {@linkcode startPgliteServer}. */
export interface PgliteServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Connections served at once; the next ones get SQLSTATE 53300. Default 4. */
  maxConnections?: number;
}

// Codes of the untyped first messages (protocol-message-formats.html).
const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;

interface Connection {
  socket: Socket;
  /** Over maxConnections: gets an ErrorResponse for its startup message. */
  refused: boolean;
  /** Until the StartupMessage, messages have no type byte. */
  started: boolean;
  pending: Buffer;
  /** This connection's messages, run one after another in order. */
  chain: Promise<void>;
  holdsLock: boolean;
  /** An extended-query message ran and its Sync has not. */
  inUnit: boolean;
  closed: boolean;
  /** Settles once the socket closed and its cleanup ran. */
  done: Promise<void>;
}

/**
 * Serves `db` on `host:port` until `stop()`; closing `db` is the caller's job, after.
 *
 * @example
 * ```ts
 * const db = await PGlite.create("memory://");
 * const server = await startPgliteServer(db, { host: "127.0.0.1", port: 0 });
 * const sql = postgres(`postgres://postgres@127.0.0.1:${server.port}/postgres`, { max: 2 });
 * await sql`select 1`;
 * await sql.end();
 * await server.stop();
 * await db.close();
 * ```
 */
export async function startPgliteServer(
  db: PGlite,
  opts: PgliteServerOptions,
): Promise<PgliteServer> {
  const maxConnections = opts.maxConnections ?? 4;
  const connections = new Set<Connection>();
  const lock = _fifoLock();

  /** Runs one message on PGlite, answers the client and releases the lock at a unit's end. */
  async function run(conn: Connection, message: Buffer, startup: boolean): Promise<void> {
    if (!conn.holdsLock) {
      await lock.acquire();
      conn.holdsLock = true;
    }
    if (conn.closed) return; // cleanup releases the lock
    try {
      const answer = await exec(message);
      if (answer.length && !conn.socket.destroyed) conn.socket.write(answer);
    } catch {
      // PGlite answers SQL errors itself; a throw means a malformed message or a broken backend.
      conn.socket.destroy();
      return;
    }
    const endsUnit = startup || message[0] === 0x53 /* Sync */ || message[0] === 0x51 /* Query */;
    conn.inUnit = !endsUnit;
    if (endsUnit && !db.isInTransaction()) {
      conn.holdsLock = false;
      lock.release();
    }
  }

  /** Undoes a lost client's open work, as PostgreSQL does when a backend loses its client. */
  async function cleanup(conn: Connection): Promise<void> {
    connections.delete(conn);
    if (!conn.holdsLock) return;
    try {
      if (conn.inUnit) {
        // A plain Sync would commit the implicit transaction. An Execute of a portal that
        // does not exist fails instead, which aborts it; the error state lasts until Sync.
        await exec(Buffer.concat([_typed("E", _cstring("feedline_abort"), _int32(0)), SYNC]));
      }
      if (db.isInTransaction()) await exec(_typed("Q", _cstring("ROLLBACK")));
    } finally {
      conn.holdsLock = false;
      lock.release();
    }
  }

  async function exec(message: Uint8Array): Promise<Buffer> {
    const chunks: Buffer[] = [];
    await db.runExclusive(() =>
      db.execProtocolRawStream(message, {
        // A view into PGlite's memory, overwritten by the next call: copy it.
        onRawData: (data) => chunks.push(Buffer.from(data)),
      })
    );
    return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
  }

  /** Cuts the byte stream into messages: a TCP read may hold part of one, or several. */
  function read(conn: Connection, data: Buffer): void {
    // Copied: messages outlive this call, queued behind the lock.
    conn.pending = Buffer.concat([conn.pending, data]);
    while (!conn.closed) {
      const buf = conn.pending;
      // Untyped: Int32 length (counting itself), Int32 code. Typed: Byte1 type, Int32 length.
      const header = conn.started ? 5 : 8;
      if (buf.length < header) return;
      const size = conn.started ? 1 + buf.readInt32BE(1) : buf.readInt32BE(0);
      // PostgreSQL too drops a startup packet over 10,000 bytes (MAX_STARTUP_PACKET_LENGTH).
      if (size < header || (!conn.started && size > 10_000)) return void conn.socket.destroy();
      if (buf.length < size) return;
      const message = buf.subarray(0, size);
      conn.pending = buf.subarray(size);
      const startup = !conn.started;
      if (startup) {
        const code = message.readInt32BE(4);
        if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
          conn.socket.write("N");
          continue;
        }
        if (code === CANCEL_REQUEST) return void conn.socket.end();
        if (conn.refused) {
          // Like PostgreSQL, read the startup packet, then say no with a FATAL error.
          return void conn.socket.end(_fatal("53300", "sorry, too many clients already"));
        }
        // PGlite itself answers the StartupMessage (AuthenticationOk ... ReadyForQuery).
        conn.started = true;
      } else if (message[0] === 0x58 /* Terminate */) {
        return void conn.socket.end();
      }
      conn.chain = conn.chain.then(() => run(conn, message, startup));
    }
  }

  const server = createServer((socket) => {
    socket.setNoDelay(true);
    let finish!: () => void;
    const conn: Connection = {
      socket,
      refused: [...connections].filter((c) => !c.refused).length >= maxConnections,
      started: false,
      pending: Buffer.alloc(0),
      chain: Promise.resolve(),
      holdsLock: false,
      inUnit: false,
      closed: false,
      done: new Promise((resolve) => finish = resolve),
    };
    connections.add(conn);
    socket.on("data", (data: Buffer) => read(conn, data));
    socket.on("error", () => {}); // 'close' follows, and does the work
    socket.on("close", () => {
      conn.closed = true;
      // A throwing cleanup means PGlite is closed or broken: nothing left to undo.
      conn.chain = conn.chain.then(() => cleanup(conn)).catch(() => {}).finally(finish);
    });
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve((server.address() as { port: number }).port);
    });
  });
  return {
    port,
    async stop() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      const done = [...connections].map((conn) => {
        conn.socket.destroy();
        return conn.done;
      });
      await Promise.all([closed, ...done]);
    },
  };
}

/** A mutex that hands over in request order, so no connection starves. */
function _fifoLock() {
  let held = false;
  const waiters: (() => void)[] = [];
  return {
    acquire(): Promise<void> {
      if (!held) {
        held = true;
        return Promise.resolve();
      }
      return new Promise((resolve) => waiters.push(resolve));
    },
    release(): void {
      const next = waiters.shift();
      if (next) next();
      else held = false;
    },
  };
}

const SYNC = Buffer.from([0x53, 0, 0, 0, 4]);

function _int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

function _cstring(s: string): Buffer {
  return Buffer.from(`${s}\0`);
}

/** Byte1 type, Int32 length (counting itself), body. */
function _typed(type: string, ...body: Buffer[]): Buffer {
  const payload = Buffer.concat(body);
  return Buffer.concat([Buffer.from(type), _int32(4 + payload.length), payload]);
}

/** ErrorResponse with severity FATAL, which a server sends before it closes. */
function _fatal(sqlstate: string, message: string): Buffer {
  const fields = ["SFATAL", "VFATAL", `C${sqlstate}`, `M${message}`].map(_cstring);
  return _typed("E", ...fields, Buffer.from([0]));
}

/**
 * The PGlite wire-protocol server against real postgres.js clients over TCP: several
 * clients at once must not see each other's extended-query state, and a client that
 * disappears must leave neither its work nor the lock behind.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { connect } from "node:net";
import { PGlite } from "@electric-sql/pglite";
import postgres from "postgres";
import { startPgliteServer } from "../src/embedded/pglite_server.ts";

const CONFIG = new URL("../deno.json", import.meta.url).pathname;

/**
 * Runs `fn` against a fresh PGlite served on a free loopback port. The data lives on disk,
 * as under `serve`: PGlite's file syncs then yield to the event loop between messages,
 * which is when other connections' messages come in. With `memory://` nothing yields, and
 * pglite-socket's interleaving bug stays hidden.
 */
async function withServer(
  maxConnections: number,
  fn: (url: string) => Promise<void>,
): Promise<void> {
  const dataDir = await Deno.makeTempDir({ prefix: "feedline-pglite-server-" });
  const db = await PGlite.create(dataDir);
  try {
    const server = await startPgliteServer(db, { host: "127.0.0.1", port: 0, maxConnections });
    try {
      await fn(`postgres://postgres@127.0.0.1:${server.port}/postgres`);
    } finally {
      await server.stop();
    }
  } finally {
    await db.close();
    await Deno.remove(dataDir, { recursive: true });
  }
}

function client(url: string, max: number): postgres.Sql {
  return postgres(url, { max, ssl: false, onnotice: () => {} });
}

/** Rejects if `promise` has not settled within `ms`: a held lock fails the test, not hangs it. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

class Rollback extends Error {}

Deno.test("concurrent postgres.js clients get correct results from one PGlite", async () => {
  await withServer(8, async (url) => {
    const clients = [client(url, 2), client(url, 2), client(url, 1)];
    const sql = clients[0];
    await sql`create table t (id bigint primary key, worker int not null)`;
    // One loop per pool connection; each loop owns the rows tagged with its worker id.
    const loops = clients.flatMap((c) => Array.from({ length: c.options.max }, () => c));
    const committed = loops.map(() => 0);
    let nextId = 0;
    const deadline = Date.now() + 3_000;
    const results = await Promise.allSettled(loops.map(async (c, worker) => {
      for (let i = 0; Date.now() < deadline; i++) {
        const ids = Array.from({ length: 200 }, () => String(nextId++));
        const workers = ids.map(() => worker);
        const insert = (q: postgres.Sql | postgres.TransactionSql) =>
          q`insert into t select * from unnest(${ids}::bigint[], ${workers}::int[]) returning id`;
        if (i % 3 === 0) {
          const [row] =
            await c`select ${worker}::int as worker, ${i}::int as i, ${`${worker}:${i}`}::text as s`;
          assert.deepEqual({ ...row }, { worker, i, s: `${worker}:${i}` });
        } else if (i % 3 === 1) {
          assert.equal((await insert(c)).length, ids.length);
          committed[worker] += ids.length;
        } else {
          const rollback = i % 2 === 0;
          await c.begin(async (tx) => {
            await insert(tx);
            const [{ n }] = await tx`select count(*)::int as n from t where worker = ${worker}`;
            assert.equal(n, committed[worker] + ids.length, "a transaction sees its own rows");
            if (rollback) throw new Rollback();
          }).catch((err) => {
            if (!(err instanceof Rollback)) throw err;
          });
          if (!rollback) committed[worker] += ids.length;
        }
      }
    }));
    try {
      const failures = results.filter((r) => r.status === "rejected");
      assert.deepEqual(failures.map((r) => String((r as PromiseRejectedResult).reason)), []);
      const counts = await sql`select worker, count(*)::int as n from t group by worker`;
      const stored = loops.map((_, w) => counts.find((r) => r.worker === w)?.n ?? 0);
      assert.deepEqual(stored, committed);
      assert.ok(committed.every((n) => n > 0), "every loop committed rows");
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
  });
});

Deno.test("a client killed inside a transaction leaves no lock and no rows", async () => {
  await withServer(4, async (url) => {
    const sql = client(url, 1);
    try {
      await sql`create table t (n int)`;
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "eval",
          "--config",
          CONFIG,
          `import postgres from "postgres";
           const sql = postgres(${JSON.stringify(url)}, { max: 1, ssl: false });
           await sql.begin(async (tx) => {
             await tx\`insert into t values (1)\`;
             console.log("inside");
             await new Promise(() => {});
           });`,
        ],
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      try {
        let out = "";
        while (!out.includes("inside")) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`child exited before its insert: ${out}`);
          out += value;
        }
        // The child holds the lock now: this query waits for it.
        const seen = sql`select count(*)::int as n from t`;
        child.kill("SIGKILL");
        const [{ n }] = await within(10_000, "a query after the kill", seen);
        assert.equal(n, 0, "the killed client's insert is rolled back");
        await sql`insert into t values (2)`;
        assert.deepEqual([...await sql`select n from t`], [{ n: 2 }]);
      } finally {
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
        await child.status;
        await reader.cancel();
      }
    } finally {
      await sql.end();
    }
  });
});

Deno.test("a client gone halfway through an extended query has its work rolled back", async () => {
  await withServer(4, async (url) => {
    const sql = client(url, 1);
    try {
      await sql`create table t (n int)`;
      const port = Number(new URL(url).port);
      const socket = connect(port, "127.0.0.1");
      await new Promise((resolve) => socket.once("connect", resolve));
      const answers: number[] = [];
      let received = Buffer.alloc(0);
      const gotAll = new Promise<void>((resolve) => {
        socket.on("data", (data: Buffer) => {
          received = Buffer.concat([received, data]);
          // Message types, until CommandComplete ('C') of the insert.
          while (received.length >= 5 && received.length >= 1 + received.readInt32BE(1)) {
            answers.push(received[0]);
            received = received.subarray(1 + received.readInt32BE(1));
          }
          if (answers.includes(0x43)) resolve();
        });
      });
      // StartupMessage, then Parse/Bind/Execute and Flush but no Sync: the insert has
      // run in the implicit transaction, which only Sync would commit.
      socket.write(startupMessage());
      socket.write(Buffer.concat([
        typed("P", cstring(""), cstring("insert into t values (1)"), int16(0)),
        typed("B", cstring(""), cstring(""), int16(0), int16(0), int16(0)),
        typed("E", cstring(""), int32(0)),
        typed("H"),
      ]));
      await within(10_000, "the insert", gotAll);
      assert.ok(answers.includes(0x32 /* BindComplete */));
      const seen = sql`select count(*)::int as n from t`;
      socket.destroy();
      const [{ n }] = await within(10_000, "a query after the disconnect", seen);
      assert.equal(n, 0);
    } finally {
      await sql.end();
    }
  });
});

Deno.test("connections above maxConnections get SQLSTATE 53300", async () => {
  await withServer(2, async (url) => {
    const a = client(url, 2);
    const b = client(url, 1);
    try {
      const reserved = await Promise.all([a.reserve(), a.reserve()]);
      await assert.rejects(b`select 1`, (err: postgres.PostgresError) => {
        assert.equal(err.code, "53300");
        assert.match(err.message, /too many clients/);
        return true;
      });
      for (const r of reserved) r.release();
      await a.end();
      assert.deepEqual([...await b`select 1 as one`], [{ one: 1 }], "the slots are free again");
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  });
});

Deno.test("simple-protocol queries and an SSLRequest are answered", async () => {
  await withServer(4, async (url) => {
    // ssl "prefer" sends an SSLRequest first and carries on in plain text after 'N'.
    const sql = postgres(url, { max: 1, ssl: "prefer" });
    try {
      assert.deepEqual([...await sql.unsafe("select 1 as one").simple()], [{ one: 1 }]);
      const both = await sql.unsafe("select 1 as a; select 2 as b").simple();
      assert.deepEqual(both.map((rows) => [...rows]), [[{ a: 1 }], [{ b: 2 }]]);
    } finally {
      await sql.end();
    }
  });
});

Deno.test("a connection that does not speak the protocol is closed and the others go on", async () => {
  await withServer(4, async (url) => {
    const sql = client(url, 1);
    try {
      await sql`select 1`;
      const socket = connect(Number(new URL(url).port), "127.0.0.1");
      const closed = new Promise((resolve) => socket.once("close", resolve));
      socket.on("error", () => {});
      socket.write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
      await within(10_000, "the server to close the connection", closed);
      assert.deepEqual([...await sql`select 2 as two`], [{ two: 2 }]);
    } finally {
      await sql.end();
    }
  });
});

function int16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

function cstring(s: string): Buffer {
  return Buffer.from(`${s}\0`);
}

function typed(type: string, ...body: Buffer[]): Buffer {
  const payload = Buffer.concat(body);
  return Buffer.concat([Buffer.from(type), int32(4 + payload.length), payload]);
}

/** Protocol 3.0, user and database "postgres". */
function startupMessage(): Buffer {
  const body = Buffer.concat([
    int32(196608),
    ...["user", "postgres", "database", "postgres"].map(cstring),
    Buffer.from([0]),
  ]);
  return Buffer.concat([int32(4 + body.length), body]);
}

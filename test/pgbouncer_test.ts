/**
 * serve and migrate through PgBouncer in transaction pooling mode: each transaction may
 * get another server connection, so no named prepared statements (`--db-pooler
 * transaction`) and no LISTEN through it; migrations keep working because their lock is
 * `pg_advisory_xact_lock`, held by the transaction itself. Without `--db-pooler`, serve
 * finds the pooler by itself (a named statement goes missing: 26000) and stops naming
 * statements; either way every reading it counts stored is in the table
 * (src/db/transaction.ts, src/db/pooler.ts).
 *
 * Needs Debian's `pgbouncer` (.ci/run installs it) and a real PostgreSQL
 * (TEST_DATABASE_URL); skipped with a message otherwise.
 */
import assert from "node:assert/strict";
import { createLogger } from "../src/log.ts";
import { freePort } from "./support/broker.ts";
import { startMosquitto } from "./support/broker.ts";
import { createTestDatabase } from "./support/db.ts";
import {
  connectClient,
  endClient,
  publish,
  startTestServe,
  type TestServe,
  waitFor,
} from "./support/serve.ts";

const PGBOUNCER = "/usr/sbin/pgbouncer";
const HAVE_PGBOUNCER = (() => {
  try {
    return Deno.statSync(PGBOUNCER).isFile;
  } catch {
    return false;
  }
})();
const SERVER = Deno.env.get("TEST_DATABASE_URL");
const skip = !HAVE_PGBOUNCER
  ? `${PGBOUNCER} is missing (apt-get install -y pgbouncer; .ci/run does)`
  : !SERVER
  ? "needs a real PostgreSQL (TEST_DATABASE_URL)"
  : null;
if (skip) console.warn(`pgbouncer_test skipped: ${skip}`);

interface Bouncer {
  port: number;
  /** What PgBouncer logged so far. */
  log(): string;
  close(): Promise<void>;
}

/**
 * PgBouncer on a free loopback port, transaction pooling, in front of TEST_DATABASE_URL.
 * `roundRobin`: each transaction gets the next server connection, as on a busy pooler.
 */
async function startPgBouncer(
  opts: { poolSize?: number; roundRobin?: boolean } = {},
): Promise<Bouncer> {
  const server = new URL(SERVER!);
  const port = await freePort();
  const dir = await Deno.makeTempDir({ prefix: "feedline-pgbouncer-" });
  const ini = `${dir}/pgbouncer.ini`;
  await Deno.writeTextFile(
    ini,
    `[databases]
* = host=${server.hostname} port=${server.port || 5432} user=${server.username || "root"}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
; Fewer server connections than serve's pool: transactions of one client connection
; land on different server connections, which is what breaks named prepared statements.
default_pool_size = ${opts.poolSize ?? 2}
server_round_robin = ${opts.roundRobin ? 1 : 0}
max_client_conn = 200
ignore_startup_parameters = extra_float_digits,options
; PgBouncer refuses to run as root; it switches to this user after reading this file.
${Deno.uid() === 0 ? "user = postgres" : ""}
`,
  );
  const child = new Deno.Command(PGBOUNCER, {
    args: [ini],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const pump = (stream: ReadableStream<Uint8Array<ArrayBuffer>>) =>
    (async () => {
      const dec = new TextDecoder();
      for await (const chunk of stream) text += dec.decode(chunk, { stream: true });
    })();
  const pumps = [pump(child.stdout), pump(child.stderr)];
  try {
    await waitFor("PgBouncer listening", async () => {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        return true;
      } catch {
        return false;
      }
    }, 10_000);
  } catch (error) {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await child.status;
    await Promise.all(pumps);
    throw new Error(`${(error as Error).message}; PgBouncer said: ${text}`);
  }
  return {
    port,
    log: () => text,
    async close() {
      try {
        child.kill("SIGINT");
      } catch { /* gone */ }
      await child.status;
      await Promise.all(pumps);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const MAIN = new URL("../main.ts", import.meta.url).pathname;

async function runMigrate(databaseUrl: string): Promise<{ code: number; out: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "migrate", "--db-pooler", "transaction"],
    env: { NO_COLOR: "1", DATABASE_URL: databaseUrl },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, out: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

Deno.test({
  name: "migrate works through PgBouncer in transaction pooling mode, two migrators at once",
  ignore: skip !== null,
  async fn() {
    const db = await createTestDatabase();
    const bouncer = await startPgBouncer();
    try {
      // An empty database, migrated only through the pooler, by two migrators at once.
      await db.sql.unsafe("drop schema public cascade; create schema public");
      const dbName = new URL(db.url).pathname.slice(1);
      const viaBouncer = `postgres://root@127.0.0.1:${bouncer.port}/${dbName}`;
      const runs = await Promise.all([runMigrate(viaBouncer), runMigrate(viaBouncer)]);
      for (const r of runs) assert.equal(r.code, 0, r.out);
      const [{ n: files }] = await db.sql`select count(*)::int as n from schema_migrations`;
      const onDisk = [...Deno.readDirSync(new URL("../sql/", import.meta.url))]
        .filter((e) => /^\d+_.*\.sql$/.test(e.name)).length;
      assert.equal(files, onDisk, "each migration applied exactly once");
      assert.match(runs.map((r) => r.out).join("\n"), /partitions created: feed_values_p/);
      const [{ parts }] = await db.sql`
        select count(*)::int as parts from pg_inherits where inhparent = 'feed_values'::regclass`;
      assert.ok(parts >= 5, `default + this month + 3 ahead, got ${parts}`);
      assert.match(
        bouncer.log(),
        new RegExp(`db=${dbName}`),
        "the migrators came through PgBouncer",
      );
    } finally {
      await bouncer.close();
      await db.close();
    }
  },
});

/**
 * 20,000 QoS 1 readings through PgBouncer in transaction mode with round-robin server
 * connections and a small pool, published as fast as the broker takes them. Every one is
 * stored, serve's own count is the rows in feed_values, and none is dead-lettered: a
 * commit is counted only when PostgreSQL confirmed it (src/db/transaction.ts), and a
 * named statement lost by the pooler is the connection's fault, not the message's.
 */
async function ingestThroughPooler(
  serveArgs: string[],
  opts: { migrate?: boolean } = {},
): Promise<{ lines: Record<string, unknown>[]; batchErrors: number }> {
  const db = await createTestDatabase();
  // An empty database: serve migrates it through the pooler.
  if (opts.migrate) await db.sql.unsafe("drop schema public cascade; create schema public");
  const bouncer = await startPgBouncer({ poolSize: 3, roundRobin: true });
  // No queue limit: Mosquitto drops QoS 1 beyond max_queued_messages (default 1000).
  const broker = await startMosquitto({ config: "max_queued_messages 0\nmax_inflight_messages 0" });
  const lines: Record<string, unknown>[] = [];
  let serve: TestServe | null = null;
  try {
    const dbName = new URL(db.url).pathname.slice(1);
    serve = await startTestServe({
      databaseUrl: `postgres://root@127.0.0.1:${bouncer.port}/${dbName}`,
      mqttUrl: broker.url,
      protocolVersion: 5,
      args: ["--db-pool-size", "4", "--batch-interval-ms", "20", ...serveArgs],
      log: createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) }),
      // The books are read directly, not through the pooler under test.
      audit: { databaseUrl: db.url },
    });
    const user = crypto.randomUUID();
    await db.sql`insert into users (id) values (${user})`;
    await db.sql`insert into feeds (user_id, key) values (${user}, 'temp')`;
    const sent = 20_000;
    const pub = await connectClient(broker.url, 5);
    try {
      const base = Date.now() - sent;
      await Promise.all(Array.from({ length: sent }, (_, i) =>
        publish(
          pub,
          serve!.feedTopic(user, "d1", "temp"),
          JSON.stringify({ value: i, ts: new Date(base + i).toISOString() }),
        )));
    } finally {
      await endClient(pub, true);
    }
    const { outcomes } = serve.metrics;
    await waitFor(
      `serve to commit ${sent} messages`,
      () => outcomes.get({ outcome: "stored" }) + outcomes.get({ outcome: "rejected" }) >= sent,
      30_000,
    );
    const [{ rows }] = await db.sql`select count(*)::int as rows from feed_values`;
    const rejects = await db.sql`select reason, detail from ingest_rejects`;
    assert.deepEqual(
      { counted: serve.metrics.stored.total(), rows, rejects: [...rejects] },
      { counted: sent, rows: sent, rejects: [] },
      "serve's count is the rows in feed_values, and no reading was dead-lettered",
    );
    return { lines, batchErrors: serve.metrics.batchErrors.get() };
  } finally {
    await serve?.stop();
    await broker.close();
    await bouncer.close();
    await db.close();
  }
}

Deno.test({
  name: "serve without --db-pooler behind a transaction pooler stores every reading it counts",
  ignore: skip !== null,
  async fn() {
    const { lines } = await ingestThroughPooler([], { migrate: true });
    // Round-robin server connections lose a named statement within the first transactions
    // (the migrations' or the first batches'); serve says so once, and sends none after.
    const found = lines.filter((l) => String(l.msg).includes("looks like a transaction pooler"));
    assert.equal(found.length, 1, "serve says once that it found a transaction pooler");
    assert.equal(found[0].level, "warn");
  },
});

Deno.test({
  name: "serve with --db-pooler transaction stores every reading it counts",
  ignore: skip !== null,
  async fn() {
    const { lines, batchErrors } = await ingestThroughPooler(["--db-pooler", "transaction"]);
    assert.equal(batchErrors, 0, "no batch failed: nothing named was sent");
    assert.equal(lines.filter((l) => String(l.msg).includes("looks like a transaction")).length, 0);
    const invalidation = lines.find((l) => l.msg === "feed cache invalidation");
    assert.match(String(invalidation?.how), /no LISTEN behind a transaction pooler/);
  },
});

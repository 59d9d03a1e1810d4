/**
 * A batch counts as stored only once PostgreSQL confirmed its COMMIT (docs/delivery.md,
 * 'What "stored" means'; src/db/transaction.ts), through the real processor and a real
 * database, with what a transaction pooler does done by hand: `deallocate all` drops the
 * connection's named prepared statements, as a server connection that never saw them
 * lacks them.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import type { DecodedMessage } from "../src/core/message.ts";
import { compileTopics } from "../src/core/topics.ts";
import { isTransientDbError, sqlStateOf } from "../src/db/errors.ts";
import { whenTransactionPoolerFound } from "../src/db/pooler.ts";
import { confirmedTransaction } from "../src/db/transaction.ts";
import { processBatch } from "../src/ingest/processor.ts";
import { FastOrCareful } from "../src/ingest/write/fast_or_careful.ts";
import { createTestDatabase, refuseValueAtCommit, type TestDatabase } from "./support/db.ts";
import { startTcpProxy } from "./support/tcp_proxy.ts";
import { decodedMessage } from "./support/messages.ts";

const decodeOpts = {
  router: compileTopics(),
  maxPayloadBytes: 65536,
  maxTextLength: 255,
  maxFutureSkewMs: 300_000,
};

function reading(user: string, value: number): DecodedMessage {
  return decodedMessage(`${user}/d1/feeds/temp`, String(value), decodeOpts);
}

/** A database with one feed, and a pool of one connection of the test's own. */
async function withOneConnection(
  fn: (sql: postgres.Sql, db: TestDatabase, user: string) => Promise<void>,
): Promise<void> {
  const db = await createTestDatabase();
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    const user = crypto.randomUUID();
    await db.sql`insert into users (id) values (${user})`;
    await db.sql`insert into feeds (user_id, key) values (${user}, 'temp')`;
    await fn(sql, db, user);
  } finally {
    await sql.end({ timeout: 0 });
    await db.close();
  }
}

async function rows(db: TestDatabase, table: "feed_values" | "ingest_rejects"): Promise<number> {
  const [{ n }] = await db.sql.unsafe(`select count(*)::int as n from ${table}`);
  return n;
}

Deno.test("a batch whose COMMIT lost its prepared statement is stored when counted stored", async () => {
  await withOneConnection(async (sql, db, user) => {
    const writePath = new FastOrCareful();
    // Every statement of a batch is now prepared on the one connection.
    await processBatch(sql, [reading(user, 1)], { fastOrCareful: writePath });
    const result = await processBatch(sql, [reading(user, 2), reading(user, 3)], {
      fastOrCareful: writePath,
      async inTransaction(tx, work) {
        await work();
        await tx.unsafe("deallocate all");
      },
    });
    assert.equal(result.stored, 2);
    assert.equal(await rows(db, "feed_values"), 3, "the two readings it counted are stored");
  });
});

Deno.test("a transaction that failed unseen is not counted: COMMIT answered ROLLBACK, batch retried", async () => {
  await withOneConnection(async (sql, db, user) => {
    const failed = await processBatch(sql, [reading(user, 1), reading(user, 2)], {
      async inTransaction(tx, work) {
        await work();
        // An error nobody looked at: the transaction is aborted, COMMIT will roll it back.
        await tx`select 1 / 0`.catch(() => {});
      },
    }).then(() => null, (error) => error);
    assert.ok(failed, "processBatch threw");
    assert.equal(failed.name, "UnconfirmedCommitError", failed.message);
    assert.ok(isTransientDbError(failed), "kept and retried like a lost connection");
    assert.equal(await rows(db, "feed_values"), 0);
    assert.equal(await rows(db, "ingest_rejects"), 0, "not dead-lettered either");
  });
});

Deno.test("a reading refused at COMMIT by a deferred constraint is dead-lettered, the rest stored", async () => {
  await withOneConnection(async (sql, db, user) => {
    await refuseValueAtCommit(db, 66);
    const batch = [1, 66, 3, 4].map((v) => reading(user, v));
    const result = await processBatch(sql, batch, { fastOrCareful: new FastOrCareful() });
    assert.deepEqual(
      { stored: result.stored, rejected: result.rejected, rows: await rows(db, "feed_values") },
      { stored: 3, rejected: { db_rejected: 1 }, rows: 3 },
    );
    const [reject] = await db.sql`select detail from ingest_rejects`;
    assert.match(reject.detail, /P0001: no 66/);
  });
});

Deno.test("a lost prepared statement (26000) is retried, never dead-lettered; the pool stops naming them", async () => {
  await withOneConnection(async (sql, db, user) => {
    await processBatch(sql, [reading(user, 1)], { fastOrCareful: new FastOrCareful() });
    const said: string[] = [];
    whenTransactionPoolerFound(sql, (line) => said.push(line));
    const opts = {
      fastOrCareful: new FastOrCareful(),
      // What a transaction pooler does: this server connection lacks every named statement.
      async inTransaction(tx: postgres.TransactionSql, work: () => Promise<void>) {
        await tx.unsafe("deallocate all");
        await work();
      },
    };
    const batch = [reading(user, 2), reading(user, 3)];
    const failed = await processBatch(sql, batch, opts).then(() => null, (error) => error);
    assert.equal(sqlStateOf(failed), "26000", String(failed));
    assert.ok(isTransientDbError(failed), "a connection problem: kept and retried");
    assert.equal(await rows(db, "ingest_rejects"), 0, "not the messages' fault");
    assert.equal(said.length, 1);
    assert.match(said[0], /looks like a transaction pooler/);
    assert.equal(sql.options.prepare, false);

    // The retry goes through: nothing named is sent any more, on the same live pool.
    const result = await processBatch(sql, batch, opts);
    assert.equal(result.stored, 2);
    assert.equal(await rows(db, "feed_values"), 3);
    const [{ named }] = await sql`select count(*)::int as named from pg_prepared_statements`;
    assert.equal(named, 0, "the retry prepared no named statement");
    assert.equal(said.length, 1, "said once");
  });
});

/** Runs a transaction, again while it fails for the connection, for at most about 2 s. */
async function onceReconnected(sql: postgres.Sql): Promise<number> {
  for (let attempt = 0;; attempt++) {
    try {
      return await confirmedTransaction(sql, async (tx) => (await tx`select 7 as n`)[0].n);
    } catch (error) {
      if (!isTransientDbError(error) || attempt >= 40) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

Deno.test({
  name: "a connection lost mid-transaction rejects at once, sends nothing more, the pool goes on",
  ignore: !Deno.env.get("TEST_DATABASE_URL"), // the proxy forwards to a real PostgreSQL
  async fn() {
    const db = await createTestDatabase();
    const url = new URL(db.url);
    const proxy = await startTcpProxy({ hostname: url.hostname, port: Number(url.port) });
    url.port = String(proxy.port);
    const sql = postgres(url.href, { max: 1, onnotice: () => {} });
    const cut = () => {
      proxy.cut();
      setTimeout(() => proxy.restore(), 20);
    };
    try {
      let kept: postgres.TransactionSql | null = null;
      // Lost while idle in the transaction: nothing is running to fail, yet it ends.
      const idle = await confirmedTransaction(sql, async (tx) => {
        kept = tx;
        await tx`select 1`;
        cut();
        await new Promise(() => {});
      }).then(() => null, (error) => error);
      assert.equal(idle?.code, "CONNECTION_CLOSED", String(idle));
      assert.throws(() => kept!`select 1`, { name: "TransactionOverError" });
      // Lost during a statement, and during a statement in a savepoint.
      for (const inSavepoint of [false, true]) {
        assert.equal(await onceReconnected(sql), 7);
        const busy = await confirmedTransaction(sql, async (tx) => {
          const sleep = (q: postgres.TransactionSql) => q`select pg_sleep(30)`;
          const running = inSavepoint ? tx.savepoint(sleep) : sleep(tx);
          setTimeout(cut, 50);
          await running;
        }).then(() => null, (error) => error);
        assert.equal(busy?.code, "CONNECTION_CLOSED", String(busy));
      }
      // The pool's one connection works again: it was neither handed back broken nor
      // written to after it died (an uncaught error from that would fail this test too).
      assert.equal(await onceReconnected(sql), 7);
    } finally {
      await sql.end({ timeout: 0 });
      await proxy.close();
      await db.close();
    }
  },
});

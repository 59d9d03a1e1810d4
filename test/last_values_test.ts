/**
 * Last values appended, then moved (sql/018, src/db/last_values.ts): through the real
 * processor and PostgreSQL, what `feed_last_values`, `feed_last_values_pending` and the
 * view `feed_latest_values` hold after batches and moves, and that moves racing batches
 * end where updating in place would have.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import postgres from "postgres";
import { compileTopics } from "../src/core/topics.ts";
import { moveLastValues } from "../src/db/last_values.ts";
import { checkSilence } from "../src/ingest/silence_check.ts";
import { processBatch } from "../src/ingest/processor.ts";
import { freePort } from "./support/broker.ts";
import { type TestDatabase, withOneFeed } from "./support/db.ts";
import { decodedMessage } from "./support/messages.ts";
import { assertProperty } from "./support/poison.ts";
import { runFeedline } from "./support/serve.ts";

const decodeOpts = {
  router: compileTopics(),
  maxPayloadBytes: 65536,
  maxTextLength: 255,
  maxFutureSkewMs: 300_000,
};

/** A reading of `key` at `second` past 2025-06-01T00:00:00Z. */
function reading(user: string, key: string, second: number, value: number) {
  const ts = new Date(Date.UTC(2025, 5, 1) + second * 1000).toISOString();
  return decodedMessage(`${user}/d1/feeds/${key}`, JSON.stringify({ value, ts }), decodeOpts);
}

const iso = (second: number) => new Date(Date.UTC(2025, 5, 1) + second * 1000).toISOString();

async function table(db: TestDatabase, name: "feed_last_values" | "feed_latest_values") {
  const rows = await db.sql.unsafe(`
    select f.key, l.value, l.at from ${name} l join feeds f on f.id = l.feed_id order by f.key`);
  return rows.map((r) => [r.key, r.value, r.at?.toISOString() ?? null]);
}

async function pendingCount(db: TestDatabase): Promise<number> {
  const [{ n }] = await db.sql`select count(*)::int as n from feed_last_values_pending`;
  return n;
}

const withFeeds = (fn: (db: TestDatabase, user: string) => Promise<void>) =>
  withOneFeed(fn, async (db, user) => {
    await db.sql`insert into feeds (user_id, key) values (${user}, 'hum')`;
    await db
      .sql`insert into feeds (user_id, key, max_silence) values (${user}, 'watched', '1 hour')`;
  });

Deno.test("a batch appends each feed's newest reading; the view shows it at once, a move carries it into feed_last_values and empties the pending table", async () => {
  await withFeeds(async (db, u) => {
    const stored = await processBatch(db.sql, [
      reading(u, "temp", 10, 1),
      reading(u, "temp", 30, 3),
      reading(u, "temp", 20, 2),
      reading(u, "hum", 5, 50),
    ]);
    assert.equal(stored.stored, 4);
    assert.equal(await pendingCount(db), 2, "one pending row per feed of the batch");
    const expected = [["hum", "50", iso(5)], ["temp", "3", iso(30)], ["watched", null, null]];
    assert.deepEqual(await table(db, "feed_latest_values"), expected);
    assert.deepEqual(
      await table(db, "feed_last_values"),
      [["hum", null, null], ["temp", null, null], ["watched", null, null]],
      "not moved yet",
    );
    assert.deepEqual(await moveLastValues(db.sql), { ours: true, taken: 2, moved: 2 });
    assert.deepEqual(await table(db, "feed_last_values"), expected);
    assert.equal(await pendingCount(db), 0);
    assert.deepEqual(await table(db, "feed_latest_values"), expected);
  });
});

Deno.test("a move never carries a last value backwards: late readings stay pending until moved, then leave the newer one", async () => {
  await withFeeds(async (db, u) => {
    await processBatch(db.sql, [reading(u, "temp", 100, 9)]);
    await moveLastValues(db.sql);
    await processBatch(db.sql, [reading(u, "temp", 50, 5)]); // late
    assert.deepEqual((await table(db, "feed_latest_values"))[1], ["temp", "9", iso(100)]);
    assert.deepEqual(await moveLastValues(db.sql), { ours: true, taken: 1, moved: 0 });
    assert.deepEqual((await table(db, "feed_last_values"))[1], ["temp", "9", iso(100)]);
    assert.equal(await pendingCount(db), 0, "a late row is taken all the same");
  });
});

Deno.test("a feed with a max_silence has its last value updated in place (nothing pending), and the silence check sees a pending reading of a feed watched since", async () => {
  await withFeeds(async (db, u) => {
    await processBatch(db.sql, [reading(u, "watched", 10, 7)]);
    assert.equal(await pendingCount(db), 0);
    assert.deepEqual((await table(db, "feed_last_values"))[2], ["watched", "7", iso(10)]);

    // A reading written while `temp` had no max_silence, which it gets before the move:
    // pending holds a fresh reading, feed_last_values an old one.
    await db.sql`
      update feed_last_values set value = '0', at = now() - interval '2 hours'
      where feed_id = (select id from feeds where key = 'temp')`;
    const fresh = decodedMessage(`${u}/d1/feeds/temp`, "21", decodeOpts);
    await processBatch(db.sql, [fresh]);
    await db.sql`update feeds set max_silence = '1 hour' where key = 'temp'`;
    const opened = await checkSilence(db.sql);
    assert.deepEqual(
      opened.map((e) => [e.feedKey, e.event]),
      [["watched", "opened"]],
      "watched (its 2025 reading) is silent; temp's pending reading is fresh",
    );
  });
});

Deno.test({
  name:
    "a move while another instance moves (its advisory lock held) takes nothing; the rows stay for the next",
  // The embedded PGlite is one backend: a transaction held open blocks every other
  // connection, so two movers never overlap there.
  ignore: !Deno.env.get("TEST_DATABASE_URL"),
}, async () => {
  await withFeeds(async (db, u) => {
    await processBatch(db.sql, [reading(u, "temp", 1, 1)]);
    let release!: () => void;
    const released = new Promise<void>((r) => release = r);
    let held!: () => void;
    const holding = new Promise<void>((r) => held = r);
    const other = db.sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(7300412018)`;
      held();
      await released;
    });
    await holding;
    try {
      assert.deepEqual(await moveLastValues(db.sql), { ours: false, taken: 0, moved: 0 });
      assert.equal(await pendingCount(db), 1);
    } finally {
      release();
      await other;
    }
    assert.deepEqual(await moveLastValues(db.sql), { ours: true, taken: 1, moved: 1 });
  });
});

Deno.test("property: batches and moves racing end where updating in place would: each feed's last value is its newest stored reading", async () => {
  await withFeeds(async (db, u) => {
    const keys = ["temp", "hum", "watched"];
    let run = 0;
    const step = fc.record({
      readings: fc.array(
        fc.record({ key: fc.constantFrom(...keys), second: fc.nat(500), value: fc.integer() }),
        { minLength: 1, maxLength: 8 },
      ),
      moveAlongside: fc.boolean(),
    });
    await assertProperty(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 6 }), async (steps) => {
        // Times of their own per run, so runs do not absorb one another's readings.
        const base = 1000 * run++;
        for (const s of steps) {
          const batch = s.readings.map((r) => reading(u, r.key, base + r.second, r.value));
          await Promise.all([
            processBatch(db.sql, batch),
            s.moveAlongside ? moveLastValues(db.sql) : null,
          ]);
        }
        const newest = await db.sql`
          select distinct on (f.key) f.key, v.value::text as value, v.created_at as at
          from feed_values v join feeds f on f.id = v.feed_id
          order by f.key, v.created_at desc`;
        const want = newest.map((r) => [r.key, r.value, r.at.toISOString()]);
        const stored = (rows: unknown[][]) => rows.filter((r) => r[1] !== null);
        assert.deepEqual(stored(await table(db, "feed_latest_values")), want, "the view");
        await moveLastValues(db.sql);
        assert.deepEqual(stored(await table(db, "feed_last_values")), want, "after a move");
        assert.equal(await pendingCount(db), 0);
      }),
      { numRuns: 25 },
    );
  });
});

Deno.test("serve --no-migrate on a database without sql/018 is refused in one line, before MQTT", async () => {
  const server = Deno.env.get("TEST_DATABASE_URL");
  if (!server) return; // the embedded test database is always migrated
  const name = `feedline_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const admin = postgres(server, { max: 1, onnotice: () => {} });
  await admin`create database ${admin(name)}`;
  const dataDir = await Deno.makeTempDir({ prefix: "feedline-last-values-test-" });
  try {
    const url = new URL(server);
    url.pathname = `/${name}`;
    const port = await freePort(); // nobody listens: serve must refuse before MQTT
    const out = await runFeedline([
      "serve",
      ...["--no-migrate", "--http", "off", "--data-dir", dataDir, "--log-level", "error"],
      ...["--database-url", url.href, "--mqtt-url", `mqtt://127.0.0.1:${port}`],
    ]);
    assert.equal(out.code, 1);
    assert.equal(out.stderr.trim().split("\n").length, 1, out.stderr);
    assert.match(out.stderr, /no feed_last_values_pending \(sql\/018\).*feedline migrate/);
  } finally {
    await admin`drop database if exists ${admin(name)} with (force)`;
    await admin.end();
    await Deno.remove(dataDir, { recursive: true });
  }
});

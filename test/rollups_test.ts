/**
 * Rollups (issue 23, docs/operations.md "Rollups"): `feed_rollups` kept in each batch's
 * transaction from the rows actually stored, so that duplicates, redeliveries, replays,
 * conflicts and late readings leave exactly the aggregate of the final raw table; the
 * rebuild from raw data; tiered retention; serve --rollups end to end.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import postgres from "postgres";
import { parseReplayArgs, runReplay } from "../commands/replay.ts";
import { encodeCaptureLine } from "../src/capture/format.ts";
import { partitionSettingsOf } from "../src/cli/option_groups.ts";
import { parseRetentionTiers, parseRollupWidths } from "../src/cli/rollup_options.ts";
import type { DecodedMessage } from "../src/core/message.ts";
import { compileTopics } from "../src/core/topics.ts";
import { applyMigrations } from "../src/db/migrate.ts";
import { listPartitions, maintainPartitions } from "../src/db/partitions.ts";
import { foldRollups, prepareRollupFolds } from "../src/db/rollup_folds.ts";
import { applyRollupRetention, rebuildRollups } from "../src/db/rollups.ts";
import { processBatch } from "../src/ingest/processor.ts";
import { FastOrCareful } from "../src/ingest/write/fast_or_careful.ts";
import { withTestDatabase } from "./support/db.ts";
import { startServeFixture } from "./support/fixture.ts";
import { freePort } from "./support/broker.ts";
import { assertProperty, PROPERTY_SEED } from "./support/poison.ts";
import { publish, runFeedline, waitFor } from "./support/serve.ts";
import { decodedMessage } from "./support/messages.ts";

const DECODE = {
  router: compileTopics(),
  maxPayloadBytes: 65536,
  maxTextLength: 255,
  maxFutureSkewMs: 300_000,
};
const WIDTHS = ["1 minutes", "1 hours"];
// Three hours back from the start of this hour: all in the past, spread over buckets.
const BASE_MS = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3 * 3_600_000;

const msg = (topic: string, payload: string) => decodedMessage(topic, payload, DECODE);

/** A reading: feed, seconds after BASE_MS, a number (quarters: sums stay exact) or a text. */
interface Reading {
  feed: "a" | "b";
  sec: number;
  value: number | string;
}

function readingMsg(user: string, r: Reading): DecodedMessage {
  const ts = new Date(BASE_MS + r.sec * 1000).toISOString();
  return msg(`${user}/d1/feeds/${r.feed}`, JSON.stringify({ value: r.value, ts }));
}

async function addUser(sql: postgres.Sql): Promise<{ user: string; feeds: string[] }> {
  const user = crypto.randomUUID();
  await sql`insert into users (id) values (${user})`;
  await sql`insert into devices (user_id, code) values (${user}, 'd1')`;
  const feeds = await sql<{ id: string }[]>`
    insert into feeds (user_id, key) values (${user}, 'a'), (${user}, 'b') returning id`;
  return { user, feeds: feeds.map((f) => f.id) };
}

/** The rollups as stored, comparable with `expected`. */
function stored(sql: postgres.Sql, feeds: string[]) {
  return sql`
    select feed_id, width::text as width, bucket, count::int as count, min, max, sum,
           first_at, last_at, last
    from feed_rollups where feed_id = any(${feeds}::int8[]) order by 1, 2, 3`;
}

/** `feed_rollups_live` (sql/015): the folded buckets and the open ones, as `stored`. */
function live(sql: postgres.Sql, feeds: string[]) {
  return sql`
    select feed_id, width::text as width, bucket, count::int as count, min, max, sum,
           first_at, last_at, last
    from feed_rollups_live where feed_id = any(${feeds}::int8[]) order by 1, 2, 3`;
}

/** The rollups of the raw table, computed independently of both writers. */
function expected(sql: postgres.Sql, feeds: string[], widths = WIDTHS) {
  return sql`
    select feed_id, w::text as width, date_bin(w, created_at, '2000-01-01 00:00:00+00') as bucket,
           count(*)::int as count, min(value), max(value), sum(value), min(created_at) as first_at,
           max(created_at) as last_at, (array_agg(value order by created_at desc))[1] as last
    from feed_values cross join unnest(${widths}::interval[]) w
    where value is not null and feed_id = any(${feeds}::int8[])
    group by 1, 2, 3 order by 1, 2, 3`;
}

const reading: fc.Arbitrary<Reading> = fc.record({
  feed: fc.constantFrom("a" as const, "b" as const),
  // Every 20 s over three hours: keys collide now and then (a conflict or a duplicate).
  sec: fc.integer({ min: 0, max: 540 }).map((k) => k * 20),
  value: fc.oneof(
    { weight: 7, arbitrary: fc.integer({ min: -400, max: 400 }).map((v) => v / 4) },
    { weight: 1, arbitrary: fc.constantFrom("ON", "OFF") },
  ),
});

/** 1m written by the batches, 1h folded from 1m, 1d from 1h (src/db/rollup_folds.ts). */
const FOLD_WIDTHS = [
  { interval: "1 minutes", ms: 60_000 },
  { interval: "1 hours", ms: 3_600_000 },
  { interval: "1 days", ms: 86_400_000 },
];
const ALL_WIDTHS = FOLD_WIDTHS.map((w) => w.interval);
const HOUR = 3_600_000;
const at = (ms: number) => new Date(BASE_MS + ms);

/**
 * Watermarks as a serve started at `BASE_MS + startMs` sets them: the readings of later
 * buckets reach the coarse widths only by a fold. The table is shared by the runs of a
 * property; every run's feeds are folded to the end, so starting over refolds them alike.
 */
async function startFolds(sql: postgres.Sql, startMs: number) {
  await sql`delete from rollup_folds`;
  await prepareRollupFolds(sql, FOLD_WIDTHS, at(startMs));
}

/** A fold at a time after all readings: every bucket of every width closed and folded. */
const FINAL_FOLD = { now: at(3 * 86_400_000), maxSteps: 10_000 };

Deno.test("rollups equal the aggregate of the final raw table, whatever the order, duplicates, batches, replays and folds (1m, 1h, 1d)", async () => {
  await withTestDatabase(async (sql) => {
    await assertProperty(
      fc.asyncProperty(
        fc.array(reading, { minLength: 1, maxLength: 25 }),
        fc.array(fc.nat(), { minLength: 0, maxLength: 15 }),
        fc.array(fc.nat(), { minLength: 40, maxLength: 40 }),
        fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 10 }),
        // serve's start, from an hour before the readings to their end.
        fc.integer({ min: -60, max: 180 }).map((m) => m * 60_000),
        // Folds after some batches: at a time within the readings' span, bounded steps.
        fc.array(
          fc.record({
            after: fc.nat({ max: 12 }),
            nowMin: fc.integer({ min: 0, max: 200 }),
            steps: fc.integer({ min: 1, max: 3 }),
          }),
          { maxLength: 6 },
        ),
        async (readings, again, order, sizes, startMs, folds) => {
          const { user, feeds } = await addUser(sql);
          await startFolds(sql, startMs);
          // Every reading once and some again (redeliveries), in a random order.
          const sent = [...readings, ...again.map((i) => readings[i % readings.length])]
            .map((r, i) => ({ r, key: order[i % order.length] * 1000 + i }))
            .sort((x, y) => x.key - y.key).map((x) => x.r);
          let pos = 0;
          for (let b = 0; pos < sent.length; b++) {
            const batch = sent.slice(pos, pos += sizes[b % sizes.length]);
            // A fresh chooser: the fast way is tried first every time (src/ingest/write/).
            await processBatch(sql, batch.map((r) => readingMsg(user, r)), {
              rollups: ALL_WIDTHS,
              fastOrCareful: new FastOrCareful(),
            });
            for (const f of folds.filter((f) => f.after === b)) {
              await foldRollups(sql, { now: at(f.nowMin * 60_000), maxSteps: f.steps });
            }
          }
          // A replay of everything: changes nothing.
          await processBatch(sql, readings.map((r) => readingMsg(user, r)), {
            rollups: ALL_WIDTHS,
          });
          const want = await expected(sql, feeds, ALL_WIDTHS);
          assert.deepEqual(await live(sql, feeds), want, "feed_rollups_live before the fold");
          await foldRollups(sql, FINAL_FOLD);
          assert.deepEqual(await stored(sql, feeds), want);
        },
      ),
      { numRuns: 25 },
    );
  });
});

Deno.test("a live reading is written once, to the finest width; the coarse buckets appear when folded", async () => {
  await withTestDatabase(async (sql) => {
    const { user, feeds } = await addUser(sql);
    await startFolds(sql, 30 * 60_000); // serve started in the first hour: 1h folded from it
    const send = (sec: number, value: number) =>
      processBatch(sql, [readingMsg(user, { feed: "a", sec, value })], { rollups: ALL_WIDTHS });
    await send(-600, 1); // an hour before: below the watermark, into 1h directly
    await send(60, 2); // live: 1m only
    const hourly = async () =>
      (await stored(sql, feeds)).filter((r) => r.width !== "1 day").map((r) => [
        r.width,
        (r.bucket.getTime() - BASE_MS) / 60_000,
        r.count,
      ]);
    assert.deepEqual(await hourly(), [["00:01:00", -10, 1], ["00:01:00", 1, 1], [
      "01:00:00",
      -60,
      1,
    ]]);
    const r = await foldRollups(sql, { now: at(HOUR + 1000) });
    assert.equal(r.steps, 1);
    assert.deepEqual((await hourly()).filter((x) => x[0] === "01:00:00"), [
      ["01:00:00", -60, 1],
      ["01:00:00", 0, 1],
    ], "the first hour is folded once closed");
    await send(120, 4); // late: its hour is folded, so it goes there directly
    await send(3600 + 5, 8); // live again: the second hour is open
    assert.deepEqual(
      await live(sql, feeds),
      await expected(sql, feeds, ALL_WIDTHS),
      "feed_rollups_live adds the open buckets from the finest width",
    );
    const rows = await stored(sql, feeds);
    const hour = rows.find((x) => x.width === "01:00:00" && x.bucket.getTime() === BASE_MS);
    assert.deepEqual([hour?.count, hour?.sum, hour?.last], [2, 6, 4]);
    await foldRollups(sql, FINAL_FOLD);
    assert.deepEqual(await stored(sql, feeds), await expected(sql, feeds, ALL_WIDTHS));
  });
});

Deno.test("a fold after a long stop catches up in bounded steps, finest first, each bucket once", async () => {
  await withTestDatabase(async (sql) => {
    const { user, feeds } = await addUser(sql);
    await startFolds(sql, 0); // 1h folded from BASE_MS on
    const readings: Reading[] = [];
    for (let sec = 0; sec < 3 * 3600; sec += 300) {
      readings.push({ feed: sec % 600 === 0 ? "a" : "b", sec, value: sec / 300 });
    }
    await processBatch(sql, readings.map((r) => readingMsg(user, r)), { rollups: ALL_WIDTHS });
    const hours = async () =>
      (await stored(sql, feeds)).filter((r) => r.width === "01:00:00").map((r) =>
        (r.bucket.getTime() - BASE_MS) / HOUR
      ).sort();
    const now = at(5 * HOUR + 60_000);
    const first = await foldRollups(sql, { now, maxSteps: 1 });
    assert.deepEqual([first.steps, first.caughtUp], [1, false]);
    assert.deepEqual(await hours(), [0, 0], "one hour folded (two feeds), the rest waits");
    let steps = first.steps;
    for (let i = 0; i < 10; i++) {
      const r = await foldRollups(sql, { now, maxSteps: 1 });
      steps += r.steps;
      if (r.caughtUp) break;
    }
    assert.equal(steps, 5, "hours 0 to 4 closed at +5 h, one step each");
    assert.deepEqual(await hours(), [0, 0, 1, 1, 2, 2]);
    const again = await foldRollups(sql, { now });
    assert.deepEqual([again.steps, again.caughtUp], [0, true], "nothing left to do");
    await foldRollups(sql, FINAL_FOLD);
    assert.deepEqual(await stored(sql, feeds), await expected(sql, feeds, ALL_WIDTHS));
  });
});

Deno.test("two writers and two folders racing leave exact rollups (the watermark lock)", async () => {
  await withTestDatabase(async (_sql, url) => {
    const sql = postgres(url, { max: 6, onnotice: () => {} });
    try {
      const { user, feeds } = await addUser(sql);
      await startFolds(sql, -HOUR);
      let seed = PROPERTY_SEED >>> 0 || 1;
      const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
      const batches = Array.from({ length: 60 }, () =>
        Array.from({ length: 30 }, (): Reading => ({
          feed: next() < 0.5 ? "a" : "b",
          sec: Math.floor(next() * 540) * 20,
          value: Math.floor(next() * 800 - 400) / 4,
        })));
      let writing = 2;
      const writer = async (mine: Reading[][]) => {
        for (const b of mine) {
          await processBatch(sql, b.map((r) => readingMsg(user, r)), { rollups: ALL_WIDTHS });
        }
        writing--;
      };
      // The folders' clock runs through the readings' hours while the writers write.
      let nowMs = 0;
      const folder = async () => {
        while (writing > 0) {
          nowMs = Math.min(nowMs + 5 * 60_000, 4 * HOUR);
          await foldRollups(sql, { now: at(nowMs), maxSteps: 1 });
        }
      };
      await Promise.all([
        writer(batches.filter((_, i) => i % 2 === 0)),
        writer(batches.filter((_, i) => i % 2 === 1)),
        folder(),
        folder(),
      ]);
      const [{ fb }] = await sql`
        select folded_before as fb from rollup_folds where width = '1 hour'`;
      assert.ok(fb.getTime() > BASE_MS, "the folds ran while the batches were written");
      await foldRollups(sql, FINAL_FOLD);
      assert.deepEqual(await stored(sql, feeds), await expected(sql, feeds, ALL_WIDTHS));
    } finally {
      await sql.end();
    }
  });
});

Deno.test("--rollups changed between starts: the widths are realigned without losing a reading", async () => {
  await withTestDatabase(async (sql) => {
    const { user, feeds } = await addUser(sql);
    await startFolds(sql, -HOUR); // 1m,1h,1d: 1h folded from BASE_MS on
    const readings: Reading[] = [0, 700, 3700, 7300].map((sec, i) => ({
      feed: "a",
      sec,
      value: i + 1,
    }));
    await processBatch(sql, readings.map((r) => readingMsg(user, r)), { rollups: ALL_WIDTHS });
    // Restarted with 1h as the finest width: what was only in 1m is folded into 1h first.
    const now = at(2 * HOUR);
    const hourly = FOLD_WIDTHS.slice(1);
    assert.deepEqual(await prepareRollupFolds(sql, hourly, now), { unchanged: false, added: [] });
    await processBatch(sql, [readingMsg(user, { feed: "a", sec: 7400, value: 9 })], {
      rollups: hourly.map((w) => w.interval),
    });
    await foldRollups(sql, FINAL_FOLD);
    const rows = await stored(sql, feeds);
    assert.deepEqual(
      rows.filter((r) => r.width !== "00:01:00"),
      [...await expected(sql, feeds, ["1 hours", "1 days"])],
    );
    assert.deepEqual(await prepareRollupFolds(sql, hourly, now), { unchanged: true, added: [] });
  });
});

Deno.test("retention keeps the finest buckets until they are folded; a rebuild stops at a coarse width's watermark", async () => {
  await withTestDatabase(async (sql) => {
    const { user, feeds } = await addUser(sql);
    // Two hours before yesterday's midnight, so the readings straddle a day whatever the
    // clock says: 1m waits for 1h only, never for 1d (folded from 1h). Failed in CI at 01:00.
    const DAY = 86_400_000;
    const start = Math.floor(Date.now() / DAY) * DAY - DAY - 2 * HOUR - BASE_MS;
    await startFolds(sql, start); // 1h folded from there on
    const readings: Reading[] = [60, 1800, 3700, 7300].map((sec, i) => ({
      feed: "a",
      sec: start / 1000 + sec,
      value: i,
    }));
    await processBatch(sql, readings.map((r) => readingMsg(user, r)), { rollups: ALL_WIDTHS });
    const minutes = async () =>
      (await stored(sql, feeds)).filter((r) => r.width === "00:01:00").length;
    const tiers = [{ interval: "1 minutes", widthMs: 60_000, keepMs: HOUR }];
    const now = at(start + 5 * HOUR);
    // A day-old 1m bucket would go, but 1h has not been folded from it yet.
    assert.deepEqual(await applyRollupRetention(sql, tiers, now), [
      { interval: "1 minutes", deleted: 0 },
    ]);
    assert.equal(await minutes(), 4);
    // A rebuild of 1h stops at its watermark: the fold makes the hours after it.
    const [r] = await rebuildRollups(sql, ["1 hours"], at(start - HOUR), null, null);
    assert.equal(r.foldedFrom?.getTime(), BASE_MS + start);
    assert.equal(r.written, 0);
    await foldRollups(sql, { now });
    const [after] = await applyRollupRetention(sql, tiers, now);
    assert.equal(after.deleted, 4, "folded: now they go");
    assert.deepEqual(
      (await stored(sql, feeds)).filter((x) => x.width === "01:00:00"),
      [...await expected(sql, feeds, ["1 hours"])],
    );
  });
});

Deno.test("the first start after the upgrade: a width written directly before keeps its current bucket direct", async () => {
  await withTestDatabase(async (sql) => {
    const { user, feeds } = await addUser(sql);
    await sql`delete from rollup_folds`;
    // Before sql/015: every width written by the batches, and 1h even before 1m was on.
    await processBatch(sql, [readingMsg(user, { feed: "a", sec: 60, value: 1 })], {
      rollups: ["1 hours"],
    });
    await processBatch(sql, [readingMsg(user, { feed: "a", sec: 120, value: 2 })], {
      rollups: ["1 minutes", "1 hours"],
    });
    await sql`delete from rollup_folds`;
    await prepareRollupFolds(sql, FOLD_WIDTHS.slice(0, 2), at(30 * 60_000));
    const [{ fb }] = await sql`select folded_before as fb from rollup_folds where width = '1 hour'`;
    assert.equal(fb.getTime(), BASE_MS + HOUR, "1h holds more of this hour than 1m: direct");
    await processBatch(sql, [readingMsg(user, { feed: "a", sec: 180, value: 4 })], {
      rollups: ["1 minutes", "1 hours"],
    });
    await foldRollups(sql, FINAL_FOLD);
    const hour = (await stored(sql, feeds)).find((r) => r.width === "01:00:00");
    assert.deepEqual([hour?.count, hour?.sum], [3, 7], "nothing of the hour lost");
  });
});

Deno.test("serve --rollups --no-migrate on a database without the rollups' tables is refused in one line", async () => {
  const server = Deno.env.get("TEST_DATABASE_URL");
  if (!server) return; // the embedded test database is always migrated
  const name = `feedline_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const admin = postgres(server, { max: 1, onnotice: () => {} });
  await admin`create database ${admin(name)}`;
  const dataDir = await Deno.makeTempDir({ prefix: "feedline-rollups-test-" });
  try {
    const url = new URL(server);
    url.pathname = `/${name}`;
    // An older schema: everything a batch writes, but not the rollups' tables.
    const sql = postgres(url.href, { max: 1, onnotice: () => {} });
    try {
      await applyMigrations(sql);
      await sql`drop table feed_rollups, rollup_folds cascade`;
    } finally {
      await sql.end();
    }
    const port = await freePort(); // nobody listens: serve must refuse before MQTT
    const out = await runFeedline([
      "serve",
      ...["--no-migrate", "--rollups", "1m,1h", "--http", "off", "--data-dir", dataDir],
      ...["--database-url", url.href, "--mqtt-url", `mqtt://127.0.0.1:${port}`],
      ...["--log-level", "error"],
    ]);
    assert.equal(out.code, 1);
    assert.equal(out.stderr.trim().split("\n").length, 1, out.stderr);
    assert.match(out.stderr, /has no rollup tables .*sql\/015.*feedline migrate/);
  } finally {
    await admin`drop database if exists ${admin(name)} with (force)`;
    await admin.end();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("without --rollups the processor writes no rollup", async () => {
  await withTestDatabase(async (sql) => {
    const { user } = await addUser(sql);
    await processBatch(sql, [readingMsg(user, { feed: "a", sec: 0, value: 1 })]);
    const [{ n }] = await sql`select count(*)::int as n from feed_rollups`;
    assert.equal(n, 0);
  });
});

Deno.test("a late reading merges into its own bucket: count, sum, min, max add up, last follows device time", async () => {
  await withTestDatabase(async (sql) => {
    const { user, feeds } = await addUser(sql);
    const send = (sec: number, value: number) =>
      processBatch(sql, [readingMsg(user, { feed: "a", sec, value })], { rollups: WIDTHS });
    await send(10, 5);
    await send(50, 7);
    await send(30, -2); // late, inside the same minute
    await send(30, -2); // redelivered
    const rows = await stored(sql, [feeds[0]]);
    const minute = rows.find((r) => r.width === "00:01:00")!;
    assert.deepEqual(
      [minute.count, minute.min, minute.max, minute.sum, minute.last],
      [3, -2, 7, 10, 7],
    );
    assert.equal(minute.first_at.getTime(), BASE_MS + 10_000);
    assert.equal(minute.last_at.getTime(), BASE_MS + 50_000);
    // No foreign key (sql/011): the trigger deletes a deleted feed's rollups.
    await sql`delete from feeds where id = ${feeds[0]}`;
    assert.deepEqual([...await stored(sql, feeds)], [], "a deleted feed's rollups are gone");
  });
});

Deno.test("feedline rollups --rebuild recomputes the range from raw readings and leaves older buckets", async () => {
  await withTestDatabase(async (sql, url) => {
    const { user, feeds } = await addUser(sql);
    // The rebuild leaves what is older than the oldest range partition alone: early on the
    // 1st of a month, BASE_MS is in last month, which the new database has no partition for.
    const oldest = (await listPartitions(sql)).find((p) => p.from !== null)!.from!;
    if (oldest.getTime() > BASE_MS - 3_600_000) {
      const from = new Date(BASE_MS - 40 * 86_400_000);
      await sql.unsafe(
        `create table feed_values_test_before partition of feed_values ` +
          `for values from ('${from.toISOString()}') to ('${oldest.toISOString()}')`,
      );
    }
    // Stored before rollups were on: nothing rolled up.
    const readings: Reading[] = [0, 70, 3700, 7300, 7400].map((sec, i) => ({
      feed: i % 2 === 0 ? "a" : "b",
      sec,
      value: i * 1.5,
    }));
    await processBatch(sql, readings.map((r) => readingMsg(user, r)));
    // A wrong bucket inside the range, and one before it that the rebuild must not touch.
    const before = new Date(BASE_MS - 3_600_000);
    await sql`insert into feed_rollups values
      (${feeds[0]}, '1 hours', ${new Date(BASE_MS + 3_600_000)}, 99, 0, 0, 0, now(), now(), 0),
      (${feeds[0]}, '1 hours', ${before}, 1, 1, 1, 1, ${before}, ${before}, 1)`;
    const since = new Date(BASE_MS + 60_000).toISOString(); // inside the first hour
    const out = await runFeedline([
      "rollups",
      "--rebuild",
      "--since",
      since,
      "--rollups",
      "1m,1h",
      "--database-url",
      url,
    ]);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /rollups 1h: rebuilt from .*: 1 row\(s\) replaced by 5\n/);
    // The hour holding --since is rebuilt whole; minutes from the minute holding it.
    const rebuilt = await stored(sql, feeds);
    const rawFrom = (w: string, fromMs: number) =>
      sql`select * from (${expected(sql, feeds, [w])}) e where bucket >= ${new Date(fromMs)}`;
    assert.deepEqual(
      rebuilt.filter((r) => r.width === "01:00:00" && r.bucket.getTime() >= BASE_MS),
      [...await rawFrom("1 hours", BASE_MS)],
    );
    assert.deepEqual(
      rebuilt.filter((r) => r.width === "00:01:00"),
      [...await rawFrom("1 minutes", BASE_MS + 60_000)],
      "the minute before --since is not built",
    );
    assert.ok(
      rebuilt.some((r) => r.bucket.getTime() === before.getTime() && r.count === 1),
      "a bucket before the range is kept",
    );
    const bad = await runFeedline(["rollups", "--rebuild", "--database-url", url]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--since/);
  });
});

Deno.test("tiered --retention deletes rollup buckets by age per width; raw keeps its own rule", async () => {
  const tiers = parseRetentionTiers("raw=30d,1m=1d,1h=2y,1d=forever");
  assert.ok(typeof tiers !== "string");
  assert.equal(tiers.rawMs, 30 * 86_400_000);
  assert.deepEqual(parseRetentionTiers("90d"), { rawMs: 90 * 86_400_000, rollups: [] });
  assert.match(String(parseRetentionTiers("raw=30d,1x=2y")), /tier is raw or a rollup width/);
  assert.match(String(parseRetentionTiers("1h=2y,1h=3y")), /named twice/);
  assert.match(String(parseRollupWidths("1m,5q")), /"5q" is not a width/);
  await withTestDatabase(async (sql) => {
    const { feeds } = await addUser(sql);
    const now = new Date(Date.UTC(2026, 5, 15, 12));
    const ago = (ms: number) => new Date(now.getTime() - ms);
    const DAY = 86_400_000;
    const rows: [string, Date][] = [
      ["1 minutes", ago(DAY - 120_000)], // ends within the day: kept
      ["1 minutes", ago(DAY + 60_000)], // ended more than a day ago: deleted
      ["1 hours", ago(700 * DAY)], // within two years: kept
      ["1 hours", ago(800 * DAY)], // deleted
      ["1 days", ago(5000 * DAY)], // forever
    ];
    for (const [w, b] of rows) {
      await sql`insert into feed_rollups values
        (${feeds[0]}, ${w}::interval, ${b}, 1, 1, 1, 1, ${b}, ${b}, 1)`;
    }
    const settings = partitionSettingsOf({
      partitionInterval: "month",
      partitionPremake: 1,
      retention: tiers,
      partitionUpkeep: false,
    });
    const r = await maintainPartitions(sql, settings, now);
    assert.equal(r.rollupsDeleted, 2);
    const left = await sql`select width::text as w, bucket from feed_rollups order by bucket`;
    assert.deepEqual(left.map((x) => [x.w, x.bucket.getTime()]), [
      ["1 day", rows[4][1].getTime()],
      ["01:00:00", rows[2][1].getTime()],
      ["00:01:00", rows[0][1].getTime()],
    ]);
  });
});

Deno.test("serve --rollups keeps rollups of what it stores; a redelivered and a late reading count once", async () => {
  const f = await startServeFixture({
    feeds: ["temp"],
    args: ["--batch-interval-ms", "20", "--rollups", "1m,1h"],
  });
  try {
    const topic = f.serve.feedTopic(f.user, "dev1", "temp");
    const send = (sec: number, value: number) =>
      publish(f.pub, topic, JSON.stringify({ value, ts: new Date(BASE_MS + sec * 1000) }));
    await send(0, 1);
    await send(90, 4);
    await send(0, 1); // a redelivery of the first
    await send(30, 2); // late
    // The sentinel: one publisher's messages are written in order, so once it is stored
    // serve has handled all of the above.
    await send(200, 9);
    await waitFor("the sentinel stored", async () => (await f.storedCount()) === 4);
    const [feed] = await f.db.sql<{ id: string }[]>`select id from feeds where key = 'temp'`;
    const rows = await stored(f.db.sql, [feed.id]);
    assert.deepEqual(rows, await expected(f.db.sql, [feed.id]));
    const hour = rows.find((r) => r.width === "01:00:00")!;
    assert.deepEqual([hour.count, hour.sum, hour.min, hour.max, hour.last], [4, 16, 1, 9, 9]);
  } finally {
    await f.close();
  }
});

Deno.test("serve folds the closed coarse buckets on its timer (--rollup-fold-interval-ms)", async () => {
  const f = await startServeFixture({
    feeds: ["temp"],
    // As left by an earlier serve with the same --rollups: 1h folded up to BASE_MS.
    prepare: (db) =>
      db.sql`insert into rollup_folds values
        ('1 minute', 'infinity'), ('1 hour', ${new Date(BASE_MS)})`,
    args: ["--batch-interval-ms", "20", "--rollups", "1m,1h", "--rollup-fold-interval-ms", "1000"],
  });
  try {
    const topic = f.serve.feedTopic(f.user, "dev1", "temp");
    const send = (sec: number, value: number) =>
      publish(f.pub, topic, JSON.stringify({ value, ts: new Date(BASE_MS + sec * 1000) }));
    await send(60, 1);
    await send(3700, 3);
    await send(3800, 5);
    await waitFor("the readings stored", async () => (await f.storedCount()) === 3);
    const [feed] = await f.db.sql<{ id: string }[]>`select id from feeds where key = 'temp'`;
    const hours = async () =>
      (await stored(f.db.sql, [feed.id])).filter((r) => r.width === "01:00:00");
    // Both hours closed hours ago: the timer folds them from 1m, the batches wrote 1m only.
    await waitFor("the hours folded", async () => (await hours()).length === 2);
    assert.deepEqual(await hours(), [...await expected(f.db.sql, [feed.id], ["1 hours"])]);
    // The watermark on /metrics: folded up to the end of the last closed hour, or later.
    const folded = f.serve.metrics.registry.render().match(
      /^feedline_rollups_folded_until_timestamp_seconds\{width="01:00:00"\} (\d+)/m,
    );
    assert.ok(folded, "the gauge of the 1h width");
    assert.ok(Number(folded[1]) * 1000 >= BASE_MS + 7200_000, folded[0]);
  } finally {
    await f.close();
  }
});

Deno.test("replay --rollups keeps rollups too, and replaying the same capture twice counts once", async () => {
  await withTestDatabase(async (sql, url) => {
    const { user, feeds } = await addUser(sql);
    const dir = await Deno.makeTempDir({ prefix: "feedline-rollups-test-" });
    try {
      const file = `${dir}/capture.jsonl`;
      const lines = [[0, 1], [40, 3], [3700, 5], [20, 2]].map(([sec, value], i) =>
        encodeCaptureLine({
          topic: `${user}/d1/feeds/a`,
          payload: new TextEncoder().encode(
            JSON.stringify({ value, ts: new Date(BASE_MS + sec * 1000).toISOString() }),
          ),
          qos: 1,
          retain: false,
          receivedAtUs: BASE_MS * 1000 + 4_000_000_000 + i,
        })
      );
      await Deno.writeTextFile(file, lines.join("\n") + "\n");
      const args = ["--database-url", url, "--progress", "off", "--rollups", "1m,1h", file];
      const quiet = { out: () => {}, err: () => {}, errIsTerminal: false };
      for (let i = 0; i < 2; i++) await runReplay(parseReplayArgs(args, {}), quiet);
      const rows = await stored(sql, feeds);
      assert.deepEqual(rows, await expected(sql, feeds));
      const firstHour = rows.find((r) => r.width === "01:00:00" && r.bucket.getTime() === BASE_MS);
      assert.deepEqual([firstHour?.count, firstHour?.sum, firstHour?.last], [3, 6, 3]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("a rebuild never touches buckets older than the raw data left (raw retention dropped it)", async () => {
  await withTestDatabase(async (sql) => {
    const { feeds } = await addUser(sql);
    const kept = new Date(Date.UTC(2020, 0, 1, 5));
    await sql`insert into feed_rollups values
      (${feeds[0]}, '1 hours', ${kept}, 7, 1, 2, 9, ${kept}, ${kept}, 2)`;
    const oldestRaw = new Date(Date.UTC(2020, 0, 1, 5, 30)); // inside that bucket
    const [r] = await rebuildRollups(
      sql,
      ["1 hours"],
      new Date(Date.UTC(2019, 0, 1)),
      null,
      oldestRaw,
    );
    assert.equal(r.from.getTime(), Date.UTC(2020, 0, 1, 6), "the first whole bucket after it");
    assert.equal(r.deleted, 0);
    const [row] = await sql`select count::int from feed_rollups where bucket = ${kept}`;
    assert.equal(row?.count, 7, "the partly dropped bucket is kept as it was");
  });
});

/**
 * Backfill (docs/scaling.md, "Backfill"): replay and serve make the range partitions old
 * readings need before writing them (src/ingest/backfill.ts, src/db/partition_cover.ts),
 * so nothing lands in feed_values' default partition; rows the default partition already
 * holds for such a month are moved into it; instances do not race; and
 * `migrate --partitions-from YYYY-MM` makes them for a planned backfill.
 */
import assert from "node:assert/strict";
import { parseReplayArgs, runReplay } from "../commands/replay.ts";
import { encodeCaptureLine } from "../src/capture/format.ts";
import { PartitionCover } from "../src/db/partition_cover.ts";
import { listPartitions } from "../src/db/partitions.ts";
import { startServeFixture } from "./support/fixture.ts";
import { createTestDatabase, type TestDatabase, withOneFeed } from "./support/db.ts";
import { publish, runFeedline, waitFor } from "./support/serve.ts";

/** Where each row of feed_values lives: partition name → rows. */
async function rowsByPartition(db: TestDatabase): Promise<Record<string, number>> {
  const rows = await db.sql<{ part: string; n: number }[]>`
    select tableoid::regclass::text as part, count(*)::int as n from feed_values
    group by 1 order by 1`;
  return Object.fromEntries(rows.map((r) => [r.part, r.n]));
}

function line(topic: string, payload: string, receivedAt: string): string {
  return encodeCaptureLine({
    topic,
    payload: new TextEncoder().encode(payload),
    qos: 1,
    retain: false,
    receivedAtUs: Date.parse(receivedAt) * 1000,
  });
}

async function replayFile(db: TestDatabase, text: string, args: string[] = []) {
  const file = await Deno.makeTempFile({ prefix: "feedline-backfill-", suffix: ".jsonl" });
  let out = "";
  try {
    await Deno.writeTextFile(file, text);
    const config = parseReplayArgs(
      ["--database-url", db.url, "--db-pool-size", "2", "--progress", "off", ...args, file],
      {},
    );
    const totals = await runReplay(config, {
      out: (t) => out += t,
      err: () => {},
      errIsTerminal: false,
    });
    return { totals, out };
  } finally {
    await Deno.remove(file);
  }
}

const withUser = (fn: (db: TestDatabase, user: string) => Promise<void>) => withOneFeed(fn);

Deno.test("replaying a capture of two past months stores every reading in its month's partition, none in the default one", async () => {
  await withUser(async (db, user) => {
    // One row of March already sits in the default partition (stored before this change):
    // it is moved into the new partition with the others.
    const [{ id }] = await db.sql`select id from feeds where user_id = ${user}`;
    await db.sql`insert into feed_values (feed_id, value, created_at)
                 values (${id}, 1, '2025-03-02T00:00:00Z')`;
    assert.deepEqual(await rowsByPartition(db), { feed_values_default: 1 });
    const topic = `${user}/d1/feeds/temp`;
    const capture = [
      line(topic, "21.5", "2025-03-10T08:00:00.000001Z"), // receive time: March
      line(topic, "21.6", "2025-03-31T23:59:59.999999Z"),
      line(topic, '{"value": 22, "ts": "2025-04-01T00:00:00Z"}', "2025-04-01T00:00:01Z"),
      line(topic, "22.5", "2025-04-20T12:00:00Z"),
    ].join("\n") + "\n";
    const { totals, out } = await replayFile(db, capture);
    assert.equal(totals.stored, 4);
    assert.deepEqual(await rowsByPartition(db), {
      feed_values_p20250301: 3,
      feed_values_p20250401: 2,
    });
    assert.deepEqual(totals.partitionsCreated, ["feed_values_p20250301", "feed_values_p20250401"]);
    assert.match(out, /partitions +created feed_values_p20250301, feed_values_p20250401/);
    // Again: nothing more to create, every reading a duplicate.
    const again = await replayFile(db, capture);
    assert.deepEqual(again.totals.partitionsCreated, []);
    assert.equal(again.totals.duplicates, 4);
  });
});

Deno.test("a dry run makes no partition; --partition-upkeep off leaves old readings to the default partition", async () => {
  await withUser(async (db, user) => {
    const capture = line(`${user}/d1/feeds/temp`, "5", "2025-06-10T08:00:00Z") + "\n";
    const before = (await listPartitions(db.sql)).map((p) => p.name);
    const dry = await replayFile(db, capture, ["--dry-run"]);
    assert.equal(dry.totals.stored, 1);
    assert.deepEqual((await listPartitions(db.sql)).map((p) => p.name), before);
    const off = await replayFile(db, capture, ["--no-partition-upkeep"]);
    assert.deepEqual(off.totals.partitionsCreated, []);
    assert.deepEqual(await rowsByPartition(db), { feed_values_default: 1 });
  });
});

Deno.test("covers racing for the same month create it once; a week interval is clipped to the gap", async () => {
  const db = await createTestDatabase();
  try {
    const t = Date.parse("2025-09-15T00:00:00Z");
    const covers = Array.from(
      { length: 4 },
      () => new PartitionCover({ interval: "month", retentionMs: null, upkeep: true }),
    );
    const results = await Promise.all(covers.map((c) => c.ensure(db.sql, [t, t + 1])));
    assert.deepEqual(results.flatMap((r) => r.created), ["feed_values_p20250901"]);
    // Weeks around the new month: the one holding 2025-08-31 (a Sunday) starts on
    // Monday 08-25 and ends where September's partition starts.
    const weekly = new PartitionCover({ interval: "week", retentionMs: null, upkeep: true });
    const r = await weekly.ensure(db.sql, [Date.parse("2025-08-31T12:00:00Z")]);
    assert.deepEqual(r.created, ["feed_values_p20250825"]);
    const part = (await listPartitions(db.sql)).find((p) => p.name === "feed_values_p20250825")!;
    assert.equal(part.to?.toISOString(), "2025-09-01T00:00:00.000Z");
    // Known now: no query at all for times it covers (a closed pool would fail).
    const known = new PartitionCover({ interval: "month", retentionMs: null, upkeep: true });
    await known.ensure(db.sql, [t]);
    const closed = await createTestDatabase();
    await closed.close();
    assert.deepEqual((await known.ensure(closed.sql, [t + 1000])).created, []);
    // Older than the retention: left to the default partition.
    const kept = new PartitionCover({ interval: "month", retentionMs: 86_400_000, upkeep: true });
    const old = await kept.ensure(db.sql, [Date.parse("2024-01-10T00:00:00Z")]);
    assert.deepEqual([old.created, old.skipped], [[], 1]);
    // Too old stays too old: not looked at again (no query: the pool is closed).
    const again = await kept.ensure(closed.sql, [Date.parse("2024-01-20T00:00:00Z")]);
    assert.deepEqual([again.created, again.skipped], [[], 0]);
  } finally {
    await db.close();
  }
});

Deno.test("serve makes the partition of a straggler months late before storing it", async () => {
  const f = await startServeFixture();
  try {
    const topic = f.serve.feedTopic(f.user, "d1", "temp");
    await publish(f.pub, topic, JSON.stringify({ value: 7, ts: "2025-02-14T10:00:00Z" }));
    await waitFor("the straggler stored", async () => (await f.storedCount()) === 1);
    const [row] = await f.db.sql`
      select tableoid::regclass::text as part from feed_values`;
    assert.equal(row.part, "feed_values_p20250201");
  } finally {
    await f.close();
  }
});

Deno.test("migrate --partitions-from YYYY-MM creates every month from then to now", async () => {
  const db = await createTestDatabase();
  try {
    const names = async () => (await listPartitions(db.sql)).map((p) => p.name);
    const first = (await names())[0]; // migrate made the current month and those ahead
    const from = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth() - 3, 1));
    const month = from.toISOString().slice(0, 7);
    const env = { DATABASE_URL: db.url };
    const run = await runFeedline(["migrate", "--partitions-from", month], env);
    assert.equal(run.code, 0, run.stderr);
    const expected = [0, 1, 2].map((k) =>
      `feed_values_p${
        new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + k, 1)).toISOString()
          .slice(0, 10).replaceAll("-", "")
      }`
    );
    assert.match(
      run.stdout,
      new RegExp(`partitions created from ${month}: ${expected.join(", ")}`),
    );
    assert.deepEqual((await names()).slice(0, 4), [...expected, first]);
    const bad = await runFeedline(["migrate", "--partitions-from", "2025-13"], env);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /partitions-from.*YYYY-MM/);
  } finally {
    await db.close();
  }
});

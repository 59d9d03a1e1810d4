/**
 * The partitioned `feed_values` (sql/006) and its upkeep (src/db/partitions.ts): the
 * migration keeps every row of a filled table, upkeep creates partitions ahead and moves
 * rows the default partition holds for a new one, retention drops whole partitions, and
 * serve reports readings that land in the default partition.
 */
import assert from "node:assert/strict";
import { nowUs } from "../src/clock.ts";
import { decode } from "../src/core/decode.ts";
import type { DecodedMessage } from "../src/core/message.ts";
import { compileTopics } from "../src/core/topics.ts";
import { applyMigrations } from "../src/db/migrate.ts";
import {
  listPartitions,
  maintainPartitions,
  nextBoundary,
  type PartitionOptions,
  periodStart,
} from "../src/db/partitions.ts";
import { processBatch } from "../src/ingest/processor.ts";
import { createLogger } from "../src/log.ts";
import { parsePrometheusText } from "./support/prometheus.ts";
import { startServeFixture } from "./support/fixture.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { publish, waitFor } from "./support/serve.ts";

const decodeOpts = {
  router: compileTopics(),
  maxPayloadBytes: 65536,
  maxTextLength: 255,
  maxFutureSkewMs: 300_000,
};

/** A reading of `feed` at `ts`, received now, or at `ts` with `receivedAtTs`. */
function reading(
  user: string,
  feed: string,
  value: number,
  ts: string,
  receivedAtTs = false,
): DecodedMessage {
  const inbound = {
    topic: `${user}/d1/feeds/${feed}`,
    payload: new TextEncoder().encode(JSON.stringify({ value, ts })),
    qos: 1 as const,
    retain: false,
    receivedAtUs: receivedAtTs ? Date.parse(ts) * 1000 : nowUs(),
  };
  return { inbound, decoded: decode(inbound, decodeOpts) };
}

const MONTHLY: PartitionOptions = {
  interval: "month",
  premake: 3,
  retentionMs: null,
  upkeep: true,
};

async function withUserFeed(fn: (db: TestDatabase, user: string) => Promise<void>) {
  const db = await createTestDatabase();
  const user = crypto.randomUUID();
  try {
    await db.sql`insert into users (id) values (${user})`;
    await db.sql`insert into feeds (user_id, key) values (${user}, 'temp')`;
    await fn(db, user);
  } finally {
    await db.close();
  }
}

/** Where each row of feed_values lives: partition name → rows. */
async function rowsByPartition(db: TestDatabase): Promise<Record<string, number>> {
  const rows = await db.sql<{ part: string; n: number }[]>`
    select tableoid::regclass::text as part, count(*)::int as n from feed_values group by 1`;
  return Object.fromEntries(rows.map((r) => [r.part, r.n]));
}

Deno.test("interval boundaries are UTC and weeks start on Monday", () => {
  const t = new Date("2026-03-18T23:30:00Z"); // a Wednesday
  assert.equal(periodStart(t, "month").toISOString(), "2026-03-01T00:00:00.000Z");
  assert.equal(nextBoundary(t, "month").toISOString(), "2026-04-01T00:00:00.000Z");
  assert.equal(periodStart(t, "week").toISOString(), "2026-03-16T00:00:00.000Z");
  assert.equal(nextBoundary(t, "week").toISOString(), "2026-03-23T00:00:00.000Z");
  assert.equal(nextBoundary(t, "day").toISOString(), "2026-03-19T00:00:00.000Z");
  assert.equal(
    nextBoundary(new Date("2026-12-31T12:00:00Z"), "month").toISOString(),
    "2027-01-01T00:00:00.000Z",
  );
  assert.equal(nextBoundary(t, "year").toISOString(), "2027-01-01T00:00:00.000Z");
});

Deno.test("migration 006 partitions a filled feed_values and keeps every row", async () => {
  const db = await createTestDatabase();
  const dir = await Deno.makeTempDir({ prefix: "feedline-pre006-" });
  try {
    // Back to the schema before 006: an empty database migrated with 001..005 only.
    await db.sql.unsafe("drop schema public cascade; create schema public");
    for await (const e of Deno.readDir(new URL("../sql/", import.meta.url))) {
      if (/^00[1-5]_.*\.sql$/.test(e.name)) {
        await Deno.copyFile(new URL(`../sql/${e.name}`, import.meta.url), `${dir}/${e.name}`);
      }
    }
    assert.equal((await applyMigrations(db.sql, { dir })).applied.length, 5);
    const [{ kind }] = await db
      .sql`select relkind as kind from pg_class where relname = 'feed_values'`;
    assert.equal(kind, "r");

    const user = crypto.randomUUID();
    await db.sql`insert into users (id) values (${user})`;
    await db.sql`insert into feeds (user_id, key) values (${user}, 'a'), (${user}, 'b')`;
    // 3,000 rows over four months of 2025, one in 2001, and 10 in the current month.
    await db.sql`
      insert into feed_values (feed_id, value, value_text, created_at, received_at)
      select f.id, g, case when g % 7 = 0 then 'on' end,
             timestamptz '2025-01-01 00:00:00+00' + g * interval '1 hour', now()
      from feeds f, generate_series(1, 1500) g`;
    await db.sql`
      insert into feed_values (feed_id, value, created_at)
      select id, 1, timestamptz '2001-09-09 01:46:40+00' from feeds where key = 'a'`;
    await db.sql`
      insert into feed_values (feed_id, value, created_at)
      select id, g, now() - g * interval '1 second' from feeds, generate_series(1, 5) g`;
    const fingerprint = () =>
      db.sql<{ n: number; digest: string }[]>`
        select count(*)::int as n,
               md5(string_agg(concat_ws('|', feed_id, value, value_text, created_at, received_at),
                              ',' order by feed_id, created_at)) as digest
        from feed_values`;
    const [before] = await fingerprint();
    assert.equal(before.n, 3011);

    const applied = (await applyMigrations(db.sql)).applied;
    assert.equal(applied[0], "006_partition_feed_values.sql");

    const [after] = await fingerprint();
    assert.deepEqual(after, before, "every row, unchanged");
    const [{ kind: kindAfter }] = await db.sql`
      select relkind as kind from pg_class where relname = 'feed_values'`;
    assert.equal(kindAfter, "p");
    const names = (await listPartitions(db.sql)).map((p) => p.name);
    const thisMonth = periodStart(new Date(), "month").toISOString().slice(0, 10).replaceAll(
      "-",
      "",
    );
    for (
      const want of [
        "feed_values_p20010901",
        "feed_values_p20250101",
        "feed_values_p20250201",
        "feed_values_p20250301",
        `feed_values_p${thisMonth}`,
        "feed_values_default",
      ]
    ) assert.ok(names.includes(want), `${want} in ${names.join(", ")}`);
    const where = await rowsByPartition(db);
    assert.equal(where.feed_values_default, undefined, "nothing in the default partition");
    assert.equal(where.feed_values_p20010901, 1);
    assert.equal(where.feed_values_p20250101, 2 * 743);
    // The key still holds across partitions: the same reading again is absorbed.
    const dup = await db.sql`
      insert into feed_values (feed_id, value, created_at)
      select id, 9, timestamptz '2025-01-01 01:00:00+00' from feeds where key = 'a'
      on conflict do nothing`;
    assert.equal(dup.count, 0);
  } finally {
    await db.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("upkeep creates partitions ahead; a reading nobody covers lands in default and moves out when its partition comes", async () => {
  await withUserFeed(async (db, user) => {
    const now = new Date();
    const first = await maintainPartitions(db.sql, MONTHLY, now);
    // The migration made this month and the next; upkeep adds up to three after this one.
    assert.equal(first.created.length, 2, first.created.join(", "));
    const again = await maintainPartitions(db.sql, MONTHLY, now);
    assert.deepEqual(
      again,
      { created: [], dropped: [], moved: 0, rollupsDeleted: 0 },
      "idempotent",
    );
    const ranges = (await listPartitions(db.sql)).filter((p) => p.to);
    const end = ranges.at(-1)!.to!;
    assert.equal(
      end.toISOString(),
      nextBoundary(
        nextBoundary(nextBoundary(nextBoundary(now, "month"), "month"), "month"),
        "month",
      ).toISOString(),
    );

    // 2001 (a clock never set right) and a month past the last partition (received then:
    // upkeep did not run for months): both land in the default partition, through the
    // processor's own insert.
    const beyond = new Date(end.getTime() + 40 * 86_400_000);
    const result = await processBatch(db.sql, [
      reading(user, "temp", 1, "2001-01-02T03:04:05Z"),
      reading(user, "temp", 2, beyond.toISOString(), true),
      reading(user, "temp", 3, now.toISOString()),
    ]);
    assert.equal(result.stored, 3);
    let where = await rowsByPartition(db);
    assert.equal(where.feed_values_default, 2);
    // last_value moved forward to the latest, wherever it is stored.
    const [feed] = await db
      .sql`select value as last_value, at as last_value_at from feeds join feed_latest_values on feed_id = id where user_id = ${user}`;
    assert.equal(feed.last_value, "2");

    // Upkeep later, when "beyond" is within reach: its partition is created and the row
    // moved into it; the 2001 one stays in default.
    const later = await maintainPartitions(db.sql, MONTHLY, beyond);
    assert.equal(later.moved, 1);
    assert.ok(later.created.length >= 2, later.created.join(", "));
    where = await rowsByPartition(db);
    assert.equal(where.feed_values_default, 1);
    const [{ part }] = await db.sql`
      select tableoid::regclass::text as part from feed_values where value = 2`;
    assert.equal(
      part,
      `feed_values_p${periodStart(beyond, "month").toISOString().slice(0, 10).replaceAll("-", "")}`,
    );
    // The same readings again are absorbed as duplicates, in default and in the new one.
    const replay = await processBatch(db.sql, [
      reading(user, "temp", 1, "2001-01-02T03:04:05Z"),
      reading(user, "temp", 2, beyond.toISOString(), true),
    ]);
    assert.equal(replay.stored, 0);
    assert.equal(replay.skipped.duplicate, 2);
  });
});

Deno.test("retention drops whole old partitions and leaves the default and current ones", async () => {
  await withUserFeed(async (db, user) => {
    await db.sql.unsafe(`create table feed_values_p20240101 partition of feed_values
                         for values from ('2024-01-01 00:00:00+00') to ('2024-02-01 00:00:00+00')`);
    await processBatch(db.sql, [
      reading(user, "temp", 1, "2024-01-05T00:00:00Z"),
      reading(user, "temp", 2, "2024-01-06T00:00:00Z"),
      reading(user, "temp", 3, "2001-01-01T00:00:00Z"),
      reading(user, "temp", 4, new Date().toISOString()),
    ]);
    const none = await maintainPartitions(db.sql, MONTHLY);
    assert.deepEqual(none.dropped, [], "no retention: nothing dropped");
    const r = await maintainPartitions(db.sql, { ...MONTHLY, retentionMs: 90 * 86_400_000 });
    assert.deepEqual(r.dropped, ["feed_values_p20240101"]);
    const where = await rowsByPartition(db);
    assert.equal(where.feed_values_p20240101, undefined);
    assert.equal(where.feed_values_default, 1, "default partition is never dropped");
    const [{ n }] = await db.sql`select count(*)::int as n from feed_values`;
    assert.equal(n, 2);
  });
});

Deno.test("upkeep off (pg_partman keeps the partitions) creates and drops nothing", async () => {
  await withUserFeed(async (db) => {
    const before = (await listPartitions(db.sql)).map((p) => p.name);
    const r = await maintainPartitions(db.sql, {
      ...MONTHLY,
      premake: 12,
      retentionMs: 3_600_000,
      upkeep: false,
    });
    assert.deepEqual(r, { created: [], dropped: [], moved: 0, rollupsDeleted: 0 });
    assert.deepEqual((await listPartitions(db.sql)).map((p) => p.name), before);
  });
});

Deno.test("serve warns about a reading that lands in the default partition and counts it", async () => {
  const lines: Record<string, unknown>[] = [];
  const f = await startServeFixture({
    // Upkeep off: serve would otherwise make the reading's partition before storing it
    // (test/backfill_test.ts); only the default partition is watched.
    args: [
      "--partition-check-interval-ms",
      "1000",
      "--http",
      "127.0.0.1:0",
      "--no-partition-upkeep",
    ],
    log: createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) }),
  });
  try {
    const created = lines.find((l) => l.msg === "database ready");
    assert.ok(Array.isArray(created?.partitions_created), JSON.stringify(created));
    const topic = f.serve.feedTopic(f.user, "d1", "temp");
    await publish(f.pub, topic, JSON.stringify({ value: 7, ts: "2001-09-09T01:46:40Z" }));
    await publish(f.pub, topic, JSON.stringify({ value: 8 }));
    await waitFor("two rows", async () => (await f.storedCount()) === 2);
    await waitFor(
      "the default partition warning",
      () => lines.some((l) => l.msg === "readings landed in the default partition of feed_values"),
      15_000,
    );
    const warning = lines.find((l) =>
      l.msg === "readings landed in the default partition of feed_values"
    )!;
    assert.equal(warning.level, "warn");
    assert.equal(warning.rows, 1);
    const [{ id }] = await f.db.sql`select id from feeds where user_id = ${f.user}`;
    assert.deepEqual(warning.feeds, [
      `feed ${id}: 1 row(s), created_at 2001-09-09T01:46:40.000Z`,
    ]);
    const text = await (await fetch(`http://127.0.0.1:${f.serve.httpPort}/metrics`)).text();
    const metrics = parsePrometheusText(text);
    assert.equal(metrics.value("feedline_default_partition_rows"), 1);
    assert.equal(metrics.value("feedline_readings_default_partition_total"), 1);
    assert.equal(metrics.value("feedline_partition_upkeep_errors_total"), 0);
  } finally {
    await f.close();
  }
});

import assert from "node:assert/strict";
import { nowUs } from "../src/clock.ts";
import { decode } from "../src/core/decode.ts";
import { FeedCache } from "../src/ingest/feed_cache.ts";
import type { DecodedMessage } from "../src/core/message.ts";
import { processBatch } from "../src/ingest/processor.ts";
import { compileTopics } from "../src/core/topics.ts";
import { FastOrCareful } from "../src/ingest/write/fast_or_careful.ts";
import { createTestDatabase, type TestDatabase, withOneFeed } from "./support/db.ts";

const opts = {
  router: compileTopics(),
  maxPayloadBytes: 65536,
  maxTextLength: 255,
  maxFutureSkewMs: 300_000,
};

function msg(
  topic: string,
  payload: string,
  extra: { retain?: boolean; receivedAtUs?: number } = {},
): DecodedMessage {
  const inbound = {
    topic,
    payload: new TextEncoder().encode(payload),
    qos: 1 as const,
    retain: extra.retain ?? false,
    receivedAtUs: extra.receivedAtUs ?? nowUs(),
  };
  return { inbound, decoded: decode(inbound, opts) };
}

const withFleet = (fn: (db: TestDatabase, user: string) => Promise<void>) =>
  withOneFeed(fn, async (db, user) => {
    await db
      .sql`insert into feeds (user_id, key, threshold_min, threshold_max) values (${user}, 'hum', 0, 100)`;
    await db.sql`insert into feeds (user_id, key, is_active) values (${user}, 'old', false)`;
  });

async function count(
  db: TestDatabase,
  table: "feed_values" | "ingest_rejects" | "device_status_events",
) {
  const [{ n }] = await db.sql.unsafe(`select count(*)::int as n from ${table}`);
  return n as number;
}

Deno.test("processBatch() stores good readings, skips inactive feeds and dead-letters the rest with reasons", async () => {
  await withFleet(async (db, u) => {
    const result = await processBatch(db.sql, [
      msg(`${u}/d1/feeds/temp`, "21.5"),
      msg(`${u}/d1/feeds/hum`, "55"),
      msg(`${u}/d1/feeds/hum`, "101"),
      msg(`${u}/d1/feeds/old`, "1"),
      msg(`${u}/d1/feeds/nope`, "1"),
      msg(`not-a-uuid/d1/feeds/temp`, "1"),
      msg(`${u}/d1/feeds/temp`, "NaN"),
      msg(`${u}/d1/feeds`, '{"temp": 22, "ghost": 1}'),
    ]);
    assert.equal(result.stored, 3);
    assert.deepEqual(result.outcomes, { stored: 3, rejected: 4, skipped: 1 });
    assert.deepEqual(result.skipped, { inactive_feed: 1 });
    assert.deepEqual(result.rejected, {
      out_of_range: 1,
      unknown_feed: 2,
      bad_user_id: 1,
      bad_payload: 1,
    });
    assert.equal(await count(db, "feed_values"), 3);
    const rejects = await db
      .sql`select reason, topic, convert_from(payload, 'UTF8') as payload, payload_size from ingest_rejects order by id`;
    assert.deepEqual(rejects.map((r) => r.reason).sort(), [
      "bad_payload",
      "bad_user_id",
      "out_of_range",
      "unknown_feed",
      "unknown_feed",
    ]);
    const outOfRange = rejects.find((r) => r.reason === "out_of_range")!;
    assert.equal(outOfRange.payload, "101");
    assert.equal(outOfRange.payload_size, 3);
  });
});

Deno.test("processBatch() moves last_value forward only, whatever order readings arrive in", async () => {
  await withFleet(async (db, u) => {
    const t = (iso: string, v: number) =>
      msg(`${u}/d1/feeds/temp`, JSON.stringify({ value: v, ts: iso }));
    await processBatch(db.sql, [t("2025-06-01T12:00:00Z", 2), t("2025-06-01T11:00:00Z", 1)]);
    let [feed] = await db
      .sql`select value as last_value, at as last_value_at from feeds join feed_latest_values on feed_id = id where user_id = ${u} and key = 'temp'`;
    assert.equal(feed.last_value, "2");
    await processBatch(db.sql, [t("2025-06-01T10:00:00Z", 0)]);
    [feed] = await db
      .sql`select value as last_value, at as last_value_at from feeds join feed_latest_values on feed_id = id where user_id = ${u} and key = 'temp'`;
    assert.equal(feed.last_value, "2", "a late reading must not overwrite a newer one");
    assert.equal(feed.last_value_at.toISOString(), "2025-06-01T12:00:00.000Z");
    await processBatch(db.sql, [t("2025-06-01T13:00:00Z", 3)]);
    [feed] = await db
      .sql`select value as last_value from feeds join feed_latest_values on feed_id = id where user_id = ${u} and key = 'temp'`;
    assert.equal(feed.last_value, "3");
    assert.equal(await count(db, "feed_values"), 4);
  });
});

Deno.test("feed_last_values holds each feed's newest reading of a batch; late and repeated readings leave it, and ingest does not rewrite feeds rows", async () => {
  await withFleet(async (db, u) => {
    const t = (key: string, hour: number, v: number) =>
      msg(`${u}/d1/feeds/${key}`, JSON.stringify({ value: v, ts: `2025-06-01T${hour}:00:00Z` }));
    const last = async () =>
      (await db.sql`
        select f.key, l.value, l.at from feed_latest_values l join feeds f on f.id = l.feed_id
        where f.user_id = ${u} order by f.key`)
        .map((r) => [r.key, r.value, r.at?.toISOString() ?? null]);
    const feedsXmin = () => db.sql`select key, xmin::text from feeds order by key`;
    assert.deepEqual(await last(), [["hum", null, null], ["old", null, null], [
      "temp",
      null,
      null,
    ]], "every feed has its row from its creation (sql/014)");
    const xminBefore = await feedsXmin();
    const batch = [t("temp", 11, 1), t("temp", 13, 3), t("hum", 12, 50), t("temp", 12, 2)];
    assert.equal((await processBatch(db.sql, batch)).stored, 4);
    const expected = [
      ["hum", "50", "2025-06-01T12:00:00.000Z"],
      ["old", null, null],
      ["temp", "3", "2025-06-01T13:00:00.000Z"],
    ];
    assert.deepEqual(await last(), expected, "the newest reading of each feed wins");
    // The same readings again (absorbed as duplicates, the careful way) and a late one.
    const again = await processBatch(db.sql, [...batch, t("temp", 10, 0)]);
    assert.equal(again.stored, 1);
    assert.deepEqual(again.skipped, { duplicate: 4 });
    assert.deepEqual(await last(), expected, "late and repeated readings do not move it back");
    assert.deepEqual(await feedsXmin(), xminBefore, "no new version of any feeds row");
  });
});

Deno.test("re-processing the same batch changes nothing: values, last_value and rejects stay as they were", async () => {
  await withFleet(async (db, u) => {
    const batch = [
      msg(`${u}/d1/feeds/temp`, "1"),
      msg(`${u}/d1/feeds/temp`, '{"value": 2, "ts": "2025-01-01T00:00:00Z"}'),
      msg(`${u}/d1/feeds/nope`, "3"),
    ];
    const first = await processBatch(db.sql, batch);
    const snapshot = async () => ({
      values: await db.sql`select feed_id, value, created_at from feed_values order by 1, 3`,
      feeds: await db
        .sql`select key, value as last_value, at as last_value_at from feeds join feed_latest_values on feed_id = id order by key`,
      rejects: await count(db, "ingest_rejects"),
    });
    const before = await snapshot();
    const second = await processBatch(db.sql, batch);
    assert.deepEqual(await snapshot(), before);
    assert.equal(first.stored, 2);
    assert.equal(second.stored, 0);
    assert.deepEqual(second.skipped, { duplicate: 2 });
  });
});

Deno.test("a burst of one feed's readings in the same instant keeps every reading", async () => {
  await withFleet(async (db, u) => {
    // A broker flushing a backlog delivers within microseconds; the receive clock must
    // still give each reading its own key.
    const batch = Array.from({ length: 2000 }, (_, i) => msg(`${u}/d1/feeds/temp`, String(i)));
    const result = await processBatch(db.sql, batch);
    assert.equal(result.stored, 2000);
    assert.equal(await count(db, "feed_values"), 2000);
    const [feed] = await db
      .sql`select value as last_value from feeds join feed_latest_values on feed_id = id where user_id = ${u} and key = 'temp'`;
    assert.equal(feed.last_value, "1999");
  });
});

Deno.test("a retained message without a timestamp is skipped; with one it is stored", async () => {
  await withFleet(async (db, u) => {
    const result = await processBatch(db.sql, [
      msg(`${u}/d1/feeds/temp`, "5", { retain: true }),
      msg(`${u}/d1/feeds/temp`, '{"value": 6, "ts": "2025-01-01T00:00:00Z"}', { retain: true }),
    ]);
    assert.equal(result.stored, 1);
    assert.deepEqual(result.skipped, { retained: 1 });
  });
});

Deno.test("device status is applied in time order with a history row per message", async () => {
  await withFleet(async (db, u) => {
    const result = await processBatch(db.sql, [
      msg(`${u}/d1/status`, '{"status": "online", "ts": "2025-01-01T10:00:00Z"}'),
      msg(`${u}/d1/status`, '{"status": "offline", "ts": "2025-01-01T09:00:00Z"}'),
      msg(`${u}/ghost/status`, "online"),
    ]);
    assert.equal(result.statuses, 2);
    assert.deepEqual(result.rejected, { unknown_device: 1 });
    const [device] = await db
      .sql`select status, last_seen_at from devices where user_id = ${u} and code = 'd1'`;
    assert.equal(device.status, "online");
    assert.equal(device.last_seen_at.toISOString(), "2025-01-01T10:00:00.000Z");
    assert.equal(await count(db, "device_status_events"), 2);
  });
});

Deno.test("auto-register creates unknown users, devices and feeds so their readings land", async () => {
  const db = await createTestDatabase();
  try {
    const u = crypto.randomUUID();
    const result = await processBatch(db.sql, [
      msg(`${u}/dev9/feeds/co2`, "412"),
      msg(`${u}/dev9/status`, "online"),
    ], { autoRegister: true });
    assert.equal(result.stored, 1);
    assert.equal(result.statuses, 1);
    const [feed] = await db.sql`
      select f.key, d.code from feeds f join devices d on d.id = f.device_id where f.user_id = ${u}`;
    assert.deepEqual({ ...feed }, { key: "co2", code: "dev9" });
  } finally {
    await db.close();
  }
});

Deno.test("one query finds every feed of a batch and the cache answers the next batch", async () => {
  await withFleet(async (db, u) => {
    const cache = new FeedCache({ ttlMs: 60_000 });
    await processBatch(db.sql, [msg(`${u}/d1/feeds/temp`, "1"), msg(`${u}/d1/feeds/hum`, "2")], {
      feedCache: cache,
    });
    assert.equal(cache.size, 2);
    // Deactivate behind the cache's back: the cached entry is still used until it expires...
    await db.sql`update feeds set is_active = false where user_id = ${u} and key = 'temp'`;
    const cached = await processBatch(db.sql, [msg(`${u}/d1/feeds/temp`, "3")], {
      feedCache: cache,
    });
    assert.equal(cached.stored, 1);
    // ...and a cleared cache reads the feed again.
    cache.clear();
    const fresh = await processBatch(db.sql, [msg(`${u}/d1/feeds/temp`, "4")], {
      feedCache: cache,
    });
    assert.deepEqual(fresh.skipped, { inactive_feed: 1 });
  });
});

Deno.test("a row the database refuses is dead-lettered with its reason and the rest of the batch is stored", async () => {
  await withFleet(async (db, u) => {
    // A rule the processor does not know about: the database is the last line of defence.
    await db.sql`alter table feed_values add constraint no_666 check (value is distinct from 666)`;
    const batch = Array.from(
      { length: 50 },
      (_, i) => msg(`${u}/d1/feeds/temp`, i === 17 || i === 40 ? "666" : String(i)),
    );
    const result = await processBatch(db.sql, batch);
    assert.equal(result.stored, 48);
    assert.deepEqual(result.rejected, { db_rejected: 2 });
    const rejects = await db.sql`select reason, detail from ingest_rejects`;
    assert.equal(rejects.length, 2);
    assert.match(rejects[0].detail, /23514.*no_666/);
    const [feed] = await db
      .sql`select value as last_value from feeds join feed_latest_values on feed_id = id where user_id = ${u} and key = 'temp'`;
    assert.equal(feed.last_value, "49");
  });
});

Deno.test("dry run reports what would happen and leaves the database untouched", async () => {
  await withFleet(async (db, u) => {
    const result = await processBatch(db.sql, [
      msg(`${u}/d1/feeds/temp`, "1"),
      msg(`${u}/d1/feeds/x`, "1"),
    ], { dryRun: true });
    assert.equal(result.stored, 1);
    assert.deepEqual(result.rejected, { unknown_feed: 1 });
    assert.equal(await count(db, "feed_values"), 0);
    assert.equal(await count(db, "ingest_rejects"), 0);
  });
});

Deno.test("a different reading absorbed by a stored reading's key is a conflict, dead-lettered as value_conflict; a redelivery is a duplicate", async () => {
  await withFleet(async (db, u) => {
    const at = 1_767_225_600_000_123;
    const topic = `${u}/d1/feeds/temp`;
    // Two different readings with one receive time (as two processes without lanes could
    // stamp them), and the first one again (a redelivery).
    const first = await processBatch(db.sql, [msg(topic, "1.5", { receivedAtUs: at })]);
    assert.equal(first.conflicts, 0);
    const again = await processBatch(db.sql, [
      msg(topic, "1.5", { receivedAtUs: at }),
      msg(topic, "2.5", { receivedAtUs: at }),
      msg(topic, "3.5", { receivedAtUs: at + 1 }),
    ]);
    assert.equal(again.stored, 1);
    assert.equal(again.skipped.duplicate, 1);
    assert.deepEqual(again.rejected, { value_conflict: 1 });
    // The absorbed redelivery is stored (its reading is there), the conflict is not.
    assert.deepEqual(again.outcomes, { stored: 2, rejected: 1, skipped: 0 });
    const [reject] = await db.sql`select reason, detail, convert_from(payload, 'UTF8') as p
      from ingest_rejects`;
    assert.equal(reject.reason, "value_conflict");
    assert.equal(reject.p, "2.5");
    assert.match(
      reject.detail,
      /^temp: 2026-01-01T00:00:00\.000123Z already holds another value \(1\.5\), not this one \(2\.5\)$/,
    );
    assert.equal(again.conflicts, 1);
    assert.deepEqual(again.conflict, {
      feedId: again.conflict!.feedId,
      createdAtUs: at,
      stored: "1.5",
      dropped: "2.5",
    });
    // Within one batch: the second of two different readings with one key.
    const inBatch = await processBatch(db.sql, [
      msg(topic, "7", { receivedAtUs: at + 5 }),
      msg(topic, "8", { receivedAtUs: at + 5 }),
    ]);
    assert.equal(inBatch.conflicts, 1);
    assert.deepEqual(inBatch.outcomes, { stored: 1, rejected: 1, skipped: 0 });
    assert.equal(await count(db, "feed_values"), 3);
    const [temp] = await db
      .sql`select value as last_value from feeds join feed_latest_values on feed_id = id where user_id = ${u} and key = 'temp'`;
    assert.equal(temp.last_value, "7", "the last value is a stored reading's, not the conflict's");
  });
});

Deno.test("untimed readings of one feed in one many-feeds message are all stored; processing it again stores nothing twice", async () => {
  await withFleet(async (db, u) => {
    const at = 1_767_225_600_000_000;
    const bulk = () =>
      msg(
        `${u}/d1/feeds`,
        '[{"feed":"temp","value":11},{"feed":"temp","value":12},{"feed":"temp","value":13}]',
        { receivedAtUs: at },
      );
    const first = await processBatch(db.sql, [bulk()]);
    assert.equal(first.stored, 3);
    assert.deepEqual(first.outcomes, { stored: 1, rejected: 0, skipped: 0 });
    const rows = await db.sql`
      select value, (extract(epoch from created_at) * 1000000)::int8 - ${at}::int8 as offset
      from feed_values order by created_at`;
    assert.deepEqual(rows.map((r) => [r.value, Number(r.offset)]), [[11, 0], [12, 16], [13, 32]]);
    // A retried batch, a replay of its capture: the same stamps, absorbed.
    const again = await processBatch(db.sql, [bulk()]);
    assert.equal(again.stored, 0);
    assert.deepEqual(again.skipped, { duplicate: 3 });
    assert.equal(again.conflicts, 0);
    assert.equal(await count(db, "feed_values"), 3);
  });
});

Deno.test("a batch is written the fast way; one with a stored reading is redone the careful way, which is kept a while", async () => {
  await withFleet(async (db, u) => {
    const path = new FastOrCareful(60_000);
    const t = (iso: string, v: number) =>
      msg(`${u}/d1/feeds/temp`, JSON.stringify({ value: v, ts: iso }));
    const first = await processBatch(db.sql, [
      t("2025-06-01T11:00:00Z", 1),
      t("2025-06-01T12:00:00Z", 2),
      msg(`${u}/d1/feeds/hum`, "50"),
    ], { fastOrCareful: path });
    assert.deepEqual({ fast: path.fast, fallbacks: path.fallbacks }, { fast: 1, fallbacks: 0 });
    assert.equal(first.stored, 3);
    assert.deepEqual(first.outcomes, { stored: 3, rejected: 0, skipped: 0 });
    const feeds = await db.sql`
      select key, value as last_value from feeds join feed_latest_values on feed_id = id where key in ('temp', 'hum') order by key`;
    assert.deepEqual(feeds.map((f) => [f.key, f.last_value]), [["hum", "50"], ["temp", "2"]]);

    // A redelivery next to a new reading: the fast way fails on the stored key, and the
    // careful way stores the new one and absorbs the other, in one commit.
    const again = await processBatch(db.sql, [
      t("2025-06-01T12:00:00Z", 2),
      t("2025-06-01T13:00:00Z", 3),
    ], { fastOrCareful: path });
    assert.deepEqual({ fast: path.fast, fallbacks: path.fallbacks }, { fast: 1, fallbacks: 1 });
    assert.equal(again.stored, 1);
    assert.deepEqual(again.skipped, { duplicate: 1 });
    assert.equal(await count(db, "feed_values"), 4);
    const [temp] = await db
      .sql`select value as last_value from feeds join feed_latest_values on feed_id = id where user_id = ${u} and key = 'temp'`;
    assert.equal(temp.last_value, "3");

    // Still within its careful period: no fast attempt.
    await processBatch(db.sql, [t("2025-06-01T14:00:00Z", 4)], { fastOrCareful: path });
    assert.deepEqual({ fast: path.fast, fallbacks: path.fallbacks }, { fast: 1, fallbacks: 1 });
    assert.equal(await count(db, "feed_values"), 5);
  });
});

Deno.test("the fast way refused by the database loses nothing: the careful way isolates the row", async () => {
  await withFleet(async (db, u) => {
    await db.sql`alter table feed_values add constraint no_666 check (value is distinct from 666)`;
    const path = new FastOrCareful();
    const result = await processBatch(db.sql, [
      msg(`${u}/d1/feeds/temp`, "1"),
      msg(`${u}/d1/feeds/temp`, "666"),
      msg(`${u}/d1/feeds/hum`, "7"),
    ], { fastOrCareful: path });
    assert.equal(path.fallbacks, 1);
    assert.equal(result.stored, 2);
    assert.deepEqual(result.rejected, { db_rejected: 1 });
    assert.equal(await count(db, "feed_values"), 2);
    assert.equal(await count(db, "ingest_rejects"), 1);
  });
});

Deno.test("the fast way stores texts, nulls and times far apart exactly", async () => {
  await withFleet(async (db, u) => {
    const path = new FastOrCareful();
    const t = (payload: unknown) => msg(`${u}/d1/feeds/temp`, JSON.stringify(payload));
    const batch = [
      t({ value: "NULL", ts: "2001-09-09T01:46:40.000001Z" }),
      t({ value: 'a "quoted" \\ text, {braces}', ts: "2025-01-01T00:00:00Z" }),
      t({ value: -0.000001, ts: "2026-11-30T23:59:59.999999Z" }), // the newest
      t({ value: 12345678901234.5, ts: "2026-06-01T12:00:00.5Z" }),
    ];
    const result = await processBatch(db.sql, batch, { fastOrCareful: path });
    assert.deepEqual({ fast: path.fast, fallbacks: path.fallbacks }, { fast: 1, fallbacks: 0 });
    assert.equal(result.stored, 4);
    const rows = await db.sql<{ v: number | null; t: string | null; at: string }[]>`
      select value as v, value_text as t,
             to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') as at
      from feed_values order by created_at`;
    assert.deepEqual(rows.map((r) => [r.v, r.t, r.at]), [
      [null, "NULL", "2001-09-09T01:46:40.000001"],
      [null, 'a "quoted" \\ text, {braces}', "2025-01-01T00:00:00.000000"],
      [12345678901234.5, null, "2026-06-01T12:00:00.500000"],
      [-0.000001, null, "2026-11-30T23:59:59.999999"],
    ]);
    const [feed] = await db.sql`
      select value as last_value, at as last_value_at from feeds join feed_latest_values on feed_id = id where user_id = ${u} and key = 'temp'`;
    assert.equal(feed.last_value, "-0.000001");
  });
});

/**
 * The lookup change counter (sql/017, src/ingest/cache_confirm.ts): serve's feed and device
 * caches keep their entries past the TTL while the counter says nothing they hold changed,
 * and drop them at the first check after a change, with or without LISTEN.
 */
import assert from "node:assert/strict";
import { CacheConfirmation } from "../src/ingest/cache_confirm.ts";
import { DeviceCache, deviceKeyOf } from "../src/ingest/device_cache.ts";
import { FeedCache, feedKeyOf } from "../src/ingest/feed_cache.ts";
import { createLogger } from "../src/log.ts";
import { createTestDatabase } from "./support/db.ts";
import { startServeFixture } from "./support/fixture.ts";
import { publish, userId, waitFor } from "./support/serve.ts";

const INFO = { id: 1, isActive: true, thresholdMin: null, thresholdMax: null };

Deno.test("the change counter confirms the caches while nothing cached changes, and clears them when something does", async () => {
  const db = await createTestDatabase();
  try {
    const user = userId();
    await db.sql`insert into users (id) values (${user})`;
    await db.sql`insert into devices (user_id, code) values (${user}, 'd1'), (${user}, 'd2')`;
    await db.sql`insert into feeds (user_id, key) values (${user}, 'temp'), (${user}, 'hum')`;
    let now = 0;
    const feeds = new FeedCache({ ttlMs: 1000 });
    const devices = new DeviceCache({ ttlMs: 1000 });
    const confirmation = new CacheConfirmation(db.sql, [feeds, devices], () => now);
    const temp = feedKeyOf(user, "temp");
    const d1 = deviceKeyOf(user, "d1");
    const check = async (at: number) => {
      now = at;
      return await confirmation.check();
    };

    assert.equal(await check(0), "cleared", "the first check sets the baseline");
    feeds.set(temp, INFO, 0);
    devices.set(d1, 7, 0);
    // What ingest writes itself is no change: last values, a device's status.
    await db.sql`
      update feed_last_values set value = '1', at = now()
      where feed_id = (select id from feeds where user_id = ${user} and key = 'temp')`;
    await db
      .sql`update devices set status = 'online', last_seen_at = now() where user_id = ${user}`;
    // A change rolled back is none either.
    await db.sql.begin(async (tx) => {
      await tx`update feeds set is_active = false where user_id = ${user}`;
      await tx`rollback`;
    }).catch(() => {});
    for (const at of [300, 600, 900, 1200, 1500]) assert.equal(await check(at), "confirmed");
    assert.deepEqual(feeds.get(temp, 1900), INFO, "held past the TTL (1000 ms)");
    assert.equal(devices.get(d1, 1900), 7);

    // A threshold of another feed: every entry goes (the counter does not say which).
    await db.sql`update feeds set threshold_max = 10 where user_id = ${user} and key = 'hum'`;
    assert.equal(await check(1800), "cleared");
    assert.equal(feeds.get(temp, 1800), undefined);
    assert.equal(devices.get(d1, 1800), undefined);

    devices.set(d1, 7, 1800);
    assert.equal(await check(2100), "confirmed");
    await db.sql`delete from devices where user_id = ${user} and code = 'd2'`;
    assert.equal(await check(2400), "cleared", "a device deleted");
    assert.equal(devices.get(d1, 2400), undefined);

    // A lookup in flight across a check may have read the feeds before a change the
    // counter holds: its answer is not cached.
    const seen = feeds.version;
    assert.equal(await check(2700), "confirmed");
    feeds.set(temp, INFO, 2700, seen);
    assert.equal(feeds.get(temp, 2700), undefined);

    await db.sql`truncate feeds cascade`;
    assert.equal(await check(3000), "cleared", "a truncate");

    await db.sql`drop table lookup_changes cascade`;
    const before017 = new CacheConfirmation(db.sql, [feeds], () => now);
    assert.equal(await before017.check(), "unavailable", "a database before sql/017");
  } finally {
    await db.close();
  }
});

Deno.test("serve without LISTEN keeps a feed cached past the TTL while the counter is unchanged, and drops it at the next check after a change", async () => {
  const lines: { msg: string }[] = [];
  const fixture = await startServeFixture({
    // A transaction pooler's setting: no LISTEN, so only the counter tells serve of changes.
    args: ["--batch-interval-ms", "50", "--feed-cache-ttl-ms", "900", "--db-pooler", "transaction"],
    log: createLogger({ level: "debug", format: "json", write: (l) => lines.push(JSON.parse(l)) }),
  });
  const { db, serve, pub, user } = fixture;
  const count = (msg: string) => lines.filter((l) => l.msg === msg).length;
  const confirmed = () => count("lookup caches confirmed");
  const cleared = () => count("lookup caches cleared");
  try {
    const topic = serve.feedTopic(user, "dev1", "temp");
    await publish(pub, topic, "1");
    await waitFor("first value stored", () => serve.metrics.stored.total() === 1);
    // A change the counter does not see (its trigger off): serve can only go on trusting
    // its cached entry, which it does past the TTL while the checks find nothing.
    await db.sql`alter table feeds disable trigger feeds_count_change`;
    await db.sql`update feeds set is_active = false where user_id = ${user}`;
    await db.sql`alter table feeds enable trigger feeds_count_change`;
    const from = confirmed();
    // Four checks, a third of the TTL apart: more than a TTL since the entry was cached.
    await waitFor("four confirmations", () => confirmed() >= from + 4);
    await publish(pub, topic, "2");
    await waitFor(
      "second value stored from the cached entry",
      () => serve.metrics.stored.total() === 2,
    );

    const clears = cleared();
    await db.sql`update feeds set threshold_max = 100 where user_id = ${user}`;
    await waitFor("the caches cleared", () => cleared() > clears);
    await publish(pub, topic, "3");
    await waitFor(
      "third value skipped as inactive",
      () => serve.metrics.skipped.get({ reason: "inactive_feed" }) === 1,
    );
    assert.equal(await fixture.storedCount(), 2);
    // On /metrics: the feed looked up twice (first, and after the clear), never in between.
    const text = serve.metrics.registry.render();
    const sample = (series: string) =>
      Number(text.match(new RegExp(`^${series.replace(/[{}]/g, "\\$&")} (\\S+)$`, "m"))?.[1]);
    assert.equal(sample('feedline_lookup_cache_misses_total{cache="feed"}'), 2);
    assert.ok(sample('feedline_lookup_cache_checks_total{result="confirmed"}') >= 4);
    assert.ok(sample('feedline_lookup_cache_checks_total{result="cleared"}') >= 2);
    assert.equal(sample('feedline_lookup_cache_entries{cache="feed"}'), 1);
  } finally {
    await fixture.close();
  }
});

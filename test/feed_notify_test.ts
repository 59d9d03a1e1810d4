import assert from "node:assert/strict";
import { FeedCache, feedKeyOf } from "../src/ingest/feed_cache.ts";
import { feedKeyOfNotification, listenForFeedChanges } from "../src/ingest/feed_notify.ts";
import { createLogger, silentLogger } from "../src/log.ts";
import { createTestDatabase } from "./support/db.ts";
import { startServeFixture } from "./support/fixture.ts";
import { publish, userId, waitFor } from "./support/serve.ts";

// The embedded database (one PGlite backend for all connections) has no usable LISTEN; there the cache relies on
// its TTL, which the processor tests cover.
const realPostgres = Deno.env.get("TEST_DATABASE_URL") !== undefined;

Deno.test("feedKeyOfNotification() reads <user_id>/<key>, keys with slashes included", () => {
  const u = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
  assert.equal(feedKeyOfNotification(`${u}/temp`), feedKeyOf(u, "temp"));
  assert.equal(feedKeyOfNotification(`${u}/a/b`), feedKeyOf(u, "a/b"));
  assert.equal(feedKeyOfNotification("garbage"), null);
});

Deno.test("a cached feed that is set up before a query ran is not cached from a stale answer", () => {
  const cache = new FeedCache();
  const seen = cache.version;
  cache.delete("other");
  cache.set(
    "k",
    { id: 1, isActive: true, thresholdMin: null, thresholdMax: null },
    Date.now(),
    seen,
  );
  assert.equal(cache.get("k"), undefined);
});

Deno.test({
  name: "changing or deleting a feed drops it from the cache of a listening process",
  ignore: !realPostgres,
  fn: async () => {
    const db = await createTestDatabase();
    try {
      const user = userId();
      await db.sql`insert into users (id) values (${user})`;
      await db.sql`insert into feeds (user_id, key) values (${user}, 'temp'), (${user}, 'hum')`;
      const cache = new FeedCache({ ttlMs: 3_600_000 });
      assert.equal(await listenForFeedChanges(db.sql, cache, silentLogger), true);
      const info = { id: 1, isActive: true, thresholdMin: null, thresholdMax: null };
      cache.set(feedKeyOf(user, "temp"), info);
      cache.set(feedKeyOf(user, "hum"), info);

      // feedline's own per-batch update must not invalidate anything.
      await db.sql`
        update feed_last_values set value = '1', at = now()
        where feed_id = (select id from feeds where user_id = ${user} and key = 'temp')`;
      await db.sql`update feeds set is_active = false where user_id = ${user} and key = 'temp'`;
      await waitFor("temp dropped", () => cache.get(feedKeyOf(user, "temp")) === undefined);
      assert.deepEqual(cache.get(feedKeyOf(user, "hum")), info);

      await db.sql`delete from feeds where user_id = ${user} and key = 'hum'`;
      await waitFor("hum dropped", () => cache.get(feedKeyOf(user, "hum")) === undefined);
    } finally {
      await db.close();
    }
  },
});

Deno.test({
  name: "serve stops storing a feed as soon as it is deactivated, long cache TTL or not",
  ignore: !realPostgres,
  fn: async () => {
    const lines: { msg: string }[] = [];
    const fixture = await startServeFixture({
      args: ["--batch-interval-ms", "50", "--feed-cache-ttl-ms", "3600000"],
      log: createLogger({
        level: "debug",
        format: "json",
        write: (l) => lines.push(JSON.parse(l)),
      }),
    });
    const { db, serve, pub, user } = fixture;
    try {
      const topic = serve.feedTopic(user, "dev1", "temp");
      await publish(pub, topic, "1");
      await waitFor("first value stored", () => serve.metrics.stored.total() === 1);
      await db.sql`update feeds set is_active = false where user_id = ${user}`;
      await waitFor(
        "serve to hear of the change",
        () => lines.some((l) => l.msg === "feed changed: dropped from the feed cache"),
      );
      await publish(pub, topic, "2");
      await waitFor(
        "second value skipped as inactive",
        () => serve.metrics.skipped.get({ reason: "inactive_feed" }) === 1,
      );
      assert.equal(await fixture.storedCount(), 1);
    } finally {
      await fixture.close();
    }
  },
});

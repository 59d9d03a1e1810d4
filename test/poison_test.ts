/**
 * Poison messages (docs/delivery.md, "Poison messages"): every repro of a message that
 * once crashed serve or blocked the write loop, through decode and `processBatch`
 * against the real database, mixed with good messages in the same batch. Each asserts
 * that the batch commits, the good messages are stored and the bad one is accounted
 * for in one place.
 */
import assert from "node:assert/strict";
import type { DecodedMessage } from "../src/core/message.ts";
import { MAX_REJECT_TOPIC_CHARS, processBatch } from "../src/ingest/processor.ts";
import { compileTopics } from "../src/core/topics.ts";
import { type TestDatabase, withOneFeed } from "./support/db.ts";
import { decodedMessage } from "./support/messages.ts";

const opts = {
  router: compileTopics(),
  maxPayloadBytes: 1_000_000,
  maxTextLength: 255,
  maxFutureSkewMs: 300_000,
  // The broker's own limit: these tests reach the dead letter with 64 KB topics.
  maxTopicLength: 65_535,
};

const msg = (topic: string, payload: string | Uint8Array, retain = false) =>
  decodedMessage(topic, payload, opts, retain);

const withFleet = (fn: (db: TestDatabase, user: string) => Promise<void>) => withOneFeed(fn);

/** A batch of `bad` between good readings 1..4 of `temp`; asserts the good ones landed. */
async function assertIsolated(
  db: TestDatabase,
  user: string,
  bad: DecodedMessage[],
  expectRejected: Record<string, number>,
) {
  const good = [1, 2, 3, 4].map((v) => msg(`${user}/d1/feeds/temp`, String(v)));
  const batch = [good[0], good[1], ...bad, good[2], good[3]];
  const result = await processBatch(db.sql, batch);
  const { stored, rejected, skipped } = result.outcomes;
  assert.equal(stored + rejected + skipped, batch.length, "every message has one outcome");
  assert.deepEqual(result.rejected, expectRejected);
  const values = await db.sql`select value from feed_values order by created_at`;
  assert.deepEqual(values.map((r) => r.value), [1, 2, 3, 4]);
  return result;
}

/** Random base64 that does not compress: what defeats a btree index on raw text. */
function noise(chars: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(Math.ceil(chars * 0.75) + 3));
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/[/+=]/g, "x").slice(0, chars);
}

Deno.test("a timestamp beyond the Date range is a bad_timestamp reject, in every place a ts goes", async () => {
  await withFleet(async (db, u) => {
    const result = await assertIsolated(db, u, [
      msg(`${u}/d1/feeds/temp`, '{"value":1,"ts":1e19}'),
      msg(`${u}/d1/feeds/temp`, '{"value":1,"ts":"1e19"}'),
      msg(`${u}/d1/feeds`, '[{"feed":"temp","value":1,"ts":1e19}]'),
      msg(`${u}/d1/status`, '{"status":"online","ts":1e19}'),
      msg(`${u}/d1/feeds/temp`, '{"value":1,"ts":-1e300}'),
    ], { bad_timestamp: 5 });
    assert.equal(result.outcomes.rejected, 5);
    const [{ n }] = await db.sql`select count(*)::int as n from ingest_rejects
      where reason = 'bad_timestamp'`;
    assert.equal(n, 5);
  });
});

Deno.test("a reject with a long topic that does not compress is dead-lettered, its topic bounded", async () => {
  await withFleet(async (db, u) => {
    const longFeed = `${u}/d1/feeds/${noise(2300)}`;
    const longUser = `${noise(3000)}/d1/feeds/temp`;
    const longDevice = `${u}/${noise(3000)}/feeds/temp`;
    const huge = `${u}/d1/feeds/${noise(65_000)}`;
    await assertIsolated(db, u, [
      msg(longFeed, "1"),
      msg(longUser, "1"),
      msg(longDevice, "1"),
      msg(huge, "1"),
    ], { bad_topic: 3, bad_user_id: 1 });
    const rows = await db.sql`select topic from ingest_rejects order by id`;
    assert.equal(rows.length, 4);
    for (const r of rows) assert.ok(r.topic.length <= MAX_REJECT_TOPIC_CHARS);
    assert.equal(rows[0].topic, longFeed.slice(0, MAX_REJECT_TOPIC_CHARS));
    // Re-processing the same messages finds them by the hashed key: still one row each.
  });
});

Deno.test("re-processing a batch with long-topic rejects leaves one row per message", async () => {
  await withFleet(async (db, u) => {
    const batch = [msg(`${u}/d1/feeds/${noise(5000)}`, "1"), msg(`${u}/d1/feeds/temp`, "7")];
    await processBatch(db.sql, batch);
    await processBatch(db.sql, batch);
    const [{ n }] = await db.sql`select count(*)::int as n from ingest_rejects`;
    assert.equal(n, 1);
  });
});

Deno.test("status JSON that jsonb refuses is stored cleaned, or rejected when absurdly deep", async () => {
  await withFleet(async (db, u) => {
    const deep = "[".repeat(30_000) + "]".repeat(30_000);
    const result = await assertIsolated(db, u, [
      msg(`${u}/d1/status`, '{"status":"online","note":"a\\u0000b"}'),
      msg(`${u}/d1/status`, '{"status":"online","k\\u0000":1}'),
      msg(`${u}/d1/status`, '{"status":"online","s":"\\ud800"}'),
      msg(`${u}/d1/status`, `{"status":"online","deep":${deep}}`),
    ], { bad_payload: 1 });
    assert.equal(result.statuses, 3);
    const events = await db.sql`select payload::text as p from device_status_events order by at`;
    assert.equal(events.length, 3);
    assert.match(events[0].p, /a\uFFFDb/);
    assert.match(events[1].p, /k\uFFFD/);
    assert.match(events[2].p, /\uFFFD/);
  });
});

Deno.test("a batch that fails outside the row inserts is bisected to the one message, dead-lettered with its SQLSTATE", async () => {
  await withFleet(async (db, u) => {
    // A rule feedline does not know: auto-register's device insert fails for one code.
    await db.sql`alter table devices add constraint no_evil check (code <> 'evil')`;
    const batch = [
      msg(`${u}/d1/feeds/temp`, "1"),
      msg(`${u}/d2/feeds/temp`, "2"),
      msg(`${u}/evil/feeds/temp`, "3"),
      msg(`${u}/d3/feeds/temp`, "4"),
    ];
    const result = await processBatch(db.sql, batch, { autoRegister: true });
    assert.deepEqual(result.outcomes, { stored: 3, rejected: 1, skipped: 0 });
    assert.deepEqual(result.rejected, { db_rejected: 1 });
    const [reject] = await db.sql`select topic, reason, detail from ingest_rejects`;
    assert.equal(reject.topic, `${u}/evil/feeds/temp`);
    assert.match(reject.detail, /^23514: .*no_evil/);
    const [{ n }] = await db.sql`select count(*)::int as n from feed_values`;
    assert.equal(n, 3);
  });
});

Deno.test("a reject row the database refuses is kept as a last-resort row and the batch commits", async () => {
  await withFleet(async (db, u) => {
    await db
      .sql`alter table ingest_rejects add constraint no_poison check (topic not like '%poison%')`;
    await assertIsolated(db, u, [msg(`${u}/poison/feeds/nope`, "1")], { unknown_feed: 1 });
    const [row] = await db.sql`select topic, reason, detail from ingest_rejects`;
    assert.equal(row.topic, "");
    assert.equal(row.reason, "unknown_feed");
    assert.match(row.detail, /could not store this reject as it came \(23514/);
  });
});

Deno.test("a retained status without a time records no event again after a restart, and sets only an unknown status", async () => {
  await withFleet(async (db, u) => {
    await db.sql`insert into devices (user_id, code) values (${u}, 'd2')`;
    const retained = () => [
      msg(`${u}/d1/status`, "offline", true),
      msg(`${u}/d2/status`, "online", true),
    ];
    // d1 has a newer live status already; d2 has none.
    await processBatch(db.sql, [msg(`${u}/d1/status`, "online")]);
    const first = await processBatch(db.sql, retained());
    const second = await processBatch(db.sql, retained()); // the broker re-sends on subscribe
    assert.deepEqual(first.skipped, { retained: 2 });
    assert.deepEqual(second.outcomes, { stored: 0, rejected: 0, skipped: 2 });
    const events = await db.sql`select count(*)::int as n from device_status_events`;
    assert.equal(events[0].n, 1);
    const devices = await db.sql`select code, status from devices where user_id = ${u}
      order by code`;
    assert.deepEqual(devices.map((d) => [d.code, d.status]), [["d1", "online"], ["d2", "online"]]);
  });
});

Deno.test("an empty retained payload clears a retained message: skipped, not rejected", async () => {
  await withFleet(async (db, u) => {
    const result = await processBatch(db.sql, [
      msg(`${u}/d1/status`, "", true),
      msg(`${u}/d1/feeds/temp`, "", true),
      msg(`${u}/d1/status`, ""),
    ]);
    assert.deepEqual(result.skipped, { retained_cleared: 3 });
    assert.deepEqual(result.outcomes, { stored: 0, rejected: 0, skipped: 3 });
  });
});

Deno.test("a shared ts in a many-feeds object applies to its entries and is not a feed", async () => {
  await withFleet(async (db, u) => {
    await db.sql`insert into feeds (user_id, key) values (${u}, 'hum')`;
    const result = await processBatch(db.sql, [
      msg(
        `${u}/d1/feeds`,
        '{"temp": 21.5, "hum": {"value": 40, "ts": 1767225600}, "ts": 1767139200}',
      ),
    ]);
    assert.deepEqual(result.rejected, {});
    assert.equal(result.stored, 2);
    const rows = await db.sql`select f.key, extract(epoch from v.created_at)::int8 as at
      from feed_values v join feeds f on f.id = v.feed_id order by f.key`;
    assert.deepEqual(rows.map((r) => [r.key, Number(r.at)]), [
      ["hum", 1767225600],
      ["temp", 1767139200],
    ]);
  });
});

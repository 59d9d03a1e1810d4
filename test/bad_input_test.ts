/**
 * Malformed traffic fired at a running serve, mixed with good messages: the process
 * survives, every good reading is stored, and every bad message is dead-lettered with
 * the reason it deserves (or counted as skipped, by reason).
 */
import assert from "node:assert/strict";
import { accountingTerms } from "../src/ingest/accounting.ts";
import { createTestBroker } from "./support/broker.ts";
import { createTestDatabase } from "./support/db.ts";
import { connectClient, endClient, publish, startTestServe, waitFor } from "./support/serve.ts";

interface Case {
  name: string;
  /** Topic after the test prefix; `{u}` is the registered user. */
  topic: string;
  payload: string | Uint8Array;
  retain?: true;
  expect: string;
}

const enc = new TextEncoder();
const SQL = "x'); drop table feeds; --";

const CASES: Case[] = [
  {
    name: "non-UUID user id",
    topic: "not-a-uuid/d1/feeds/temp",
    payload: "1",
    expect: "bad_user_id",
  },
  {
    name: "SQL in the user id",
    topic: `${encodeURIComponent(SQL)}/d1/feeds/temp`,
    payload: "1",
    expect: "bad_user_id",
  },
  // Control characters in topics are refused by Mosquitto itself (MQTT 5 §1.5.4); the
  // decode unit tests cover them. An overlong level reaches us.
  {
    name: "overlong device code",
    topic: `{u}/${"d".repeat(300)}/feeds/temp`,
    payload: "1",
    expect: "bad_topic",
  },
  {
    name: "overlong feed key",
    topic: `{u}/d1/feeds/${"k".repeat(200)}`,
    payload: "1",
    expect: "bad_topic",
  },
  { name: "unknown feed", topic: "{u}/d1/feeds/nope", payload: "1", expect: "unknown_feed" },
  {
    name: "SQL in the feed key",
    topic: `{u}/d1/feeds/${SQL}`,
    payload: "1",
    expect: "unknown_feed",
  },
  {
    name: "inactive feed",
    topic: "{u}/d1/feeds/off",
    payload: "1",
    expect: "skipped:inactive_feed",
  },
  {
    // Clears the retained reading published first: serve subscribes without
    // Retain-As-Published, so the broker forwards the clear live with RETAIN 0.
    name: "empty retained payload",
    topic: "{u}/d1/feeds/temp",
    payload: "",
    retain: true,
    expect: "skipped:retained_cleared",
  },
  { name: "blank payload", topic: "{u}/d1/feeds/temp", payload: " ", expect: "bad_payload" },
  {
    name: "huge payload",
    topic: "{u}/d1/feeds/temp",
    payload: "9".repeat(100_000),
    expect: "too_large",
  },
  {
    name: "non-UTF-8 payload",
    topic: "{u}/d1/feeds/temp",
    payload: new Uint8Array([0xc3, 0x28, 0xa0, 0xa1]),
    expect: "bad_payload",
  },
  {
    name: "NUL byte payload",
    topic: "{u}/d1/feeds/temp",
    payload: "12\u00003",
    expect: "bad_payload",
  },
  { name: "NaN", topic: "{u}/d1/feeds/temp", payload: "NaN", expect: "bad_payload" },
  { name: "Infinity", topic: "{u}/d1/feeds/temp", payload: "Infinity", expect: "bad_payload" },
  { name: "1e999", topic: "{u}/d1/feeds/temp", payload: "1e999", expect: "bad_payload" },
  {
    name: "deeply nested JSON",
    topic: "{u}/d1/feeds/temp",
    payload: "[".repeat(5000) + "]".repeat(5000),
    expect: "bad_payload",
  },
  {
    name: "JSON without value",
    topic: "{u}/d1/feeds/temp",
    payload: '{"v": 1}',
    expect: "bad_payload",
  },
  {
    name: "far-future timestamp",
    topic: "{u}/d1/feeds/temp",
    payload: '{"value": 1, "ts": "2999-01-01T00:00:00Z"}',
    expect: "future_timestamp",
  },
  {
    name: "unparsable timestamp",
    topic: "{u}/d1/feeds/temp",
    payload: '{"value": 1, "ts": "last tuesday"}',
    expect: "bad_timestamp",
  },
  { name: "out of range", topic: "{u}/d1/feeds/hum", payload: "150", expect: "out_of_range" },
  { name: "unknown status word", topic: "{u}/d1/status", payload: "napping", expect: "bad_status" },
  {
    name: "status of an unknown device",
    topic: "{u}/ghost/status",
    payload: "online",
    expect: "unknown_device",
  },
  {
    name: "many-feeds payload that is not an object",
    topic: "{u}/d1/feeds",
    payload: "[1,2,3]",
    expect: "bad_payload",
  },
  {
    name: "SQL as a text value",
    topic: "{u}/d1/feeds/temp",
    payload: "x'); drop table feeds; --",
    expect: "stored",
  },
];

Deno.test("malformed traffic never takes serve or good messages down and each bad message gets its reason", async () => {
  const db = await createTestDatabase();
  const broker = await createTestBroker();
  const user = crypto.randomUUID();
  await db.sql`insert into users (id) values (${user})`;
  await db.sql`insert into devices (user_id, code) values (${user}, 'd1')`;
  await db.sql`insert into feeds (user_id, key) values (${user}, 'temp')`;
  await db
    .sql`insert into feeds (user_id, key, threshold_min, threshold_max) values (${user}, 'hum', 0, 100)`;
  await db.sql`insert into feeds (user_id, key, is_active) values (${user}, 'off', false)`;
  const serve = await startTestServe({
    databaseUrl: db.url,
    mqttUrl: broker.url,
    protocolVersion: broker.protocolVersion,
    args: ["--batch-interval-ms", "200"],
  });
  const pub = await connectClient(broker.url, broker.protocolVersion);
  try {
    // Good messages before, between and after the bad ones, in the same batches.
    let good = 0;
    const goodOne = () =>
      publish(
        pub,
        serve.feedTopic(user, "d1", "temp"),
        JSON.stringify({ value: good, ts: 1_767_225_600_000 + good++ }),
      );
    // A retained reading, live: cleared by one of the cases.
    await publish(pub, serve.feedTopic(user, "d1", "temp"), '{"value": -1, "ts": 1767225500}', {
      qos: 1,
      retain: true,
    });
    for (const c of CASES) {
      await goodOne();
      await publish(
        pub,
        `${serve.prefix}/${c.topic.replace("{u}", user)}`,
        typeof c.payload === "string" ? enc.encode(c.payload) : c.payload,
        { qos: 1, retain: c.retain ?? false },
      );
    }
    await goodOne();
    const total = CASES.length + good + 1;
    await waitFor(
      "every message to be processed",
      () => serve.metrics.processed.total() === total,
      20_000,
    );

    const rejects = await db.sql`select topic, reason from ingest_rejects`;
    for (const c of CASES.filter((c) => !c.expect.includes(":") && c.expect !== "stored")) {
      const topic = `${serve.prefix}/${c.topic.replace("{u}", user)}`;
      assert.ok(
        rejects.some((r) => r.reason === c.expect && r.topic === topic),
        `${c.name}: expected a ${c.expect} reject; have ${
          JSON.stringify(rejects.filter((r) => r.topic === topic))
        }`,
      );
    }
    const expectedRejects = CASES.filter((c) =>
      !c.expect.includes(":") && c.expect !== "stored"
    ).length;
    assert.equal(rejects.length, expectedRejects, "one reject row per bad message");
    assert.equal(serve.metrics.skipped.get({ reason: "inactive_feed" }), 1);
    assert.equal(serve.metrics.skipped.get({ reason: "retained_cleared" }), 1);
    const [{ n }] = await db.sql`select count(*)::int as n from feed_values`;
    assert.equal(n, good + 2, "every good reading (and the SQL-looking text) is stored");
    const [{ n: feeds }] = await db.sql`select count(*)::int as n from feeds`;
    assert.equal(feeds, 3, "the feeds table is intact");
    const a = accountingTerms(serve.metrics, serve.pipeline.queued, serve.pipeline.inFlight);
    assert.ok(a.balanced, JSON.stringify(a));
    assert.equal(a.received, total);
  } finally {
    await endClient(pub);
    await serve.stop();
    await broker.close();
    await db.close();
  }
});

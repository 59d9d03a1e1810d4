/**
 * Threshold and silence alerts against real PostgreSQL and Mosquitto (docs/operations.md,
 * "Alerts"): a reading out of range is stored and opens an alert, announced on
 * `{user_id}/alerts` and by NOTIFY; hysteresis and minimum duration in device time; a
 * late reading reopens nothing; the silence check opens `stale` and one reading closes
 * it; three instances open one alert, not three; a capture replayed twice opens no
 * second alert, and a dry run none.
 */
import assert from "node:assert/strict";
import type { MqttClient } from "mqtt";
import postgres from "postgres";
import { parseReplayArgs, runReplay } from "../commands/replay.ts";
import { encodeCaptureLine } from "../src/capture/format.ts";
import { checkSilence } from "../src/ingest/silence_check.ts";
import { createTestDatabase } from "./support/db.ts";
import { startServeFixture } from "./support/fixture.ts";
import {
  connectClient,
  endClient,
  heldBeforeSentinel,
  publish,
  startTestServe,
  type TestServe,
  uniquePrefix,
  waitFor,
} from "./support/serve.ts";

const MQTT_URL = Deno.env.get("TEST_MQTT_URL");
const REAL_PG = Deno.env.get("TEST_DATABASE_URL") !== undefined;

/** A past device time, whole seconds apart per step. */
const T0 = Math.floor(Date.now() / 1000) * 1000 - 3_600_000;
const at = (s: number) => new Date(T0 + s * 1000).toISOString();

interface Received {
  topic: string;
  payload: string;
}

/** Subscribes to `topic` (QoS 1) and collects what arrives, in order. */
async function collect(client: MqttClient, topic: string): Promise<Received[]> {
  const got: Received[] = [];
  client.on("message", (t, payload) => {
    if (t === topic) got.push({ topic: t, payload: payload.toString() });
  });
  await client.subscribeAsync(topic, { qos: 1 });
  return got;
}

/** The alert events among `received` (sentinels left out). */
function events(received: Received[]): Record<string, unknown>[] {
  return received.filter((m) => m.payload.startsWith("{")).map((m) => JSON.parse(m.payload));
}

const ms = (iso: unknown) => Date.parse(String(iso));

Deno.test("threshold mode alert: the reading is stored, an alert opens and is announced; hysteresis, minimum duration and late readings in device time", async () => {
  const fixture = await startServeFixture({
    feeds: [],
    prepare: (db, user) =>
      db.sql`
        insert into feeds (user_id, key, threshold_min, threshold_max, threshold_mode,
                           threshold_hysteresis, threshold_min_duration)
        values (${user}, 'temp', null, 50, 'alert', 5, null),
               (${user}, 'hum', 10, null, 'alert', null, '10 seconds')`,
    args: ["--batch-interval-ms", "20"],
  });
  const { db, serve, pub, user } = fixture;
  const notified: Record<string, unknown>[] = [];
  const listening = REAL_PG
    ? await db.sql.listen("feedline_alerts", (p) => notified.push(JSON.parse(p)))
    : null;
  try {
    const topic = `${user}/alerts`;
    const received = await collect(pub, topic);
    const send = (feed: string, value: number, s: number) =>
      publish(pub, serve.feedTopic(user, "dev1", feed), JSON.stringify({ value, ts: at(s) }));

    await send("temp", 20, 0);
    await send("temp", 70, 1);
    await waitFor("the opened event", () => events(received).length === 1);
    const opened = events(received)[0];
    assert.deepEqual(
      { ...opened, since: ms(opened.since), at: ms(opened.at) },
      {
        event: "opened",
        kind: "above",
        feed: "temp",
        feed_id: opened.feed_id,
        alert_id: opened.alert_id,
        since: T0 + 1000,
        at: T0 + 1000,
        value: 70,
        threshold: 50,
        peak: 70,
        suppressed: 0,
      },
    );
    const [{ n: stored }] = await db.sql`select count(*)::int as n from feed_values`;
    assert.equal(stored, 2, "the out-of-range reading is stored, not rejected");
    assert.equal((await db.sql`select 1 from ingest_rejects`).length, 0);
    const [row] = await db.sql`
      select a.id::int, a.kind, a.since, a.opened_at, a.closed_at, a.threshold, a.opened_value,
             a.peak_value, v.value as reading
      from feed_alerts a join feed_values v on v.feed_id = a.feed_id and v.created_at = a.opened_at`;
    assert.equal(row.id, opened.alert_id);
    assert.deepEqual(
      [row.kind, row.since.getTime(), row.opened_at.getTime(), row.closed_at, row.reading],
      ["above", T0 + 1000, T0 + 1000, null, 70],
      "(feed_id, opened_at) names the reading that opened it",
    );

    // Higher: the peak moves. Back to 48 and 46: inside the range, but within the
    // hysteresis band of 5, so still open. 44 is past it and closes the alert.
    await send("temp", 80, 2);
    await send("temp", 48, 3);
    await send("temp", 46, 4);
    await send("temp", 44, 5);
    await waitFor("the closed event", () => events(received).length === 2);
    const closed = events(received)[1];
    assert.equal(closed.event, "closed");
    assert.equal(closed.alert_id, opened.alert_id);
    assert.equal(ms(closed.at), T0 + 5000, "closed by the reading past the band, not before");
    assert.deepEqual([closed.value, closed.peak], [44, 80]);
    const [after] = await db.sql`select closed_at, peak_value, closed_value from feed_alerts`;
    assert.deepEqual([after.closed_at.getTime(), after.peak_value, after.closed_value], [
      T0 + 5000,
      80,
      44,
    ]);

    // A late reading, out of range, older than the one that closed the alert: stored, and
    // it reopens nothing. Minimum duration: hum must stay below 10 for 10 s of device time.
    await send("temp", 99, 2.5);
    await send("hum", 5, 0);
    await send("hum", 4, 5);
    await waitFor("nine readings stored", () => serve.metrics.stored.total() === 9);
    assert.deepEqual(events(await heldBeforeSentinel(serve.source.client, topic, received)), [
      opened,
      closed,
    ]);
    assert.equal((await db.sql`select 1 from feed_alerts`).length, 1);
    await send("hum", 3, 10);
    await waitFor("the hum alert", () => events(received).length === 3);
    const hum = events(received)[2];
    assert.deepEqual(
      [hum.kind, hum.feed, ms(hum.since), ms(hum.at), hum.peak, hum.threshold],
      ["below", "hum", T0, T0 + 10_000, 3, 10],
    );

    if (listening) {
      await waitFor("three notifications", () => notified.length === 3);
      assert.deepEqual(
        notified.map((n) => [n.event, n.kind, n.key, n.user_id, n.id]),
        [
          ["opened", "above", "temp", user, opened.alert_id],
          ["closed", "above", "temp", user, opened.alert_id],
          ["opened", "below", "hum", user, hum.alert_id],
        ],
      );
    }
  } finally {
    await listening?.unlisten();
    await fixture.close();
  }
});

Deno.test("silence: the check opens a stale alert for a feed silent longer than max_silence, its next reading closes it, feedline_alerts_open follows", async () => {
  const fixture = await startServeFixture({
    feeds: [],
    prepare: async (db, user) => {
      await db.sql`
        insert into feeds (user_id, key, max_silence)
        values (${user}, 'temp', '1 minute'), (${user}, 'fresh', '1 hour')`;
      await db.sql`update feed_last_values set value = '1', at = now()`;
    },
    args: ["--batch-interval-ms", "20", "--alert-check-interval-ms", "50"],
  });
  const { db, serve, pub, user } = fixture;
  const gauge = () =>
    /feedline_alerts_open\{kind="stale"\} (\d+)/.exec(serve.metrics.registry.render())?.[1];
  try {
    const received = await collect(pub, `${user}/alerts`);
    // Silent only now that the event has a subscriber: the check runs from serve's start,
    // and an event published before the subscription is not sent again.
    await db.sql`
      update feed_last_values l set at = now() - interval '5 minutes'
      from feeds f where f.id = l.feed_id and f.key = 'temp'`;
    await waitFor("the stale event", () => events(received).length === 1);
    const stale = events(received)[0];
    const [row] = await db.sql`
      select a.id::int, a.kind, a.since, a.closed_at, extract(epoch from a.max_silence)::int as s,
             l.at as last_value_at
      from feed_alerts a join feed_last_values l on l.feed_id = a.feed_id`;
    assert.deepEqual(
      [stale.event, stale.kind, stale.feed, stale.alert_id, stale.max_silence_s],
      ["opened", "stale", "temp", row.id, 60],
    );
    assert.equal(ms(stale.since), row.last_value_at.getTime(), "silent since its last reading");
    assert.equal(row.closed_at, null);
    await waitFor("feedline_alerts_open{kind=stale} 1", () => gauge() === "1");

    await publish(pub, serve.feedTopic(user, "dev1", "temp"), "21.5");
    await waitFor("the closed event", () => events(received).length === 2);
    const closed = events(received)[1];
    const [reading] = await db.sql`select created_at from feed_values`;
    assert.deepEqual([closed.event, closed.kind, closed.alert_id], ["closed", "stale", row.id]);
    assert.equal(ms(closed.at), reading.created_at.getTime(), "closed by that reading");
    const [after] = await db.sql`select closed_at from feed_alerts`;
    assert.equal(after.closed_at.getTime(), reading.created_at.getTime());
    await waitFor("feedline_alerts_open{kind=stale} 0", () => gauge() === "0");
    assert.equal((await db.sql`select 1 from feed_alerts`).length, 1, "none for the fresh feed");
  } finally {
    await fixture.close();
  }
});

Deno.test("the silence check run at once by three connections, again and again, opens one stale alert per silent feed", async () => {
  const db = await createTestDatabase();
  const pools = [0, 1, 2].map(() => postgres(db.url, { max: 1, onnotice: () => {} }));
  try {
    const user = crypto.randomUUID();
    await db.sql`insert into users (id) values (${user})`;
    await db.sql`
      insert into feeds (user_id, key, max_silence)
      select ${user}, 'f' || i, '1 minute' from generate_series(1, 60) i`;
    await db.sql`update feed_last_values set at = now() - interval '2 minutes'`;
    const results = await Promise.all(
      pools.map(async (sql) => {
        const opened = [];
        for (let round = 0; round < 5; round++) opened.push(...await checkSilence(sql));
        return opened;
      }),
    );
    const all = results.flat();
    assert.equal(all.length, 60, "one opened event per feed over all connections");
    assert.equal(new Set(all.map((e) => e.feedId)).size, 60);
    const [{ n, open }] = await db.sql`
      select count(*)::int as n, count(*) filter (where closed_at is null)::int as open
      from feed_alerts`;
    assert.deepEqual([n, open], [60, 60]);
  } finally {
    for (const sql of pools) await sql.end();
    await db.close();
  }
});

Deno.test({
  name: "three serves in one shared group open one stale alert and publish one event, not three",
  ignore: !MQTT_URL,
  async fn() {
    const db = await createTestDatabase();
    const prefix = uniquePrefix();
    const user = crypto.randomUUID();
    await db.sql`insert into users (id) values (${user})`;
    await db.sql`insert into feeds (user_id, key) values (${user}, 'temp')`;
    const serves: TestServe[] = [];
    const sub = await connectClient(MQTT_URL!, 5);
    try {
      for (let i = 0; i < 3; i++) {
        serves.push(
          await startTestServe({
            databaseUrl: db.url,
            mqttUrl: MQTT_URL!,
            protocolVersion: 5,
            prefix,
            args: [
              ...["--shared-group", `g${prefix}`, "--client-id", `fl-${prefix}-${i}`],
              ...["--alert-check-interval-ms", "20"],
            ],
          }),
        );
      }
      const topic = `${user}/alerts`;
      const received = await collect(sub, topic);
      // Silent from now on, with all three checking every 20 ms.
      await db.sql.begin(async (tx) => {
        await tx`update feeds set max_silence = '1 minute'`;
        await tx`update feed_last_values set at = now() - interval '2 minutes'`;
      });
      const gauge = (s: TestServe) =>
        /feedline_alerts_open\{kind="stale"\} (\d+)/.exec(s.metrics.registry.render())?.[1];
      // Each instance has run a check after the alert was open (it counts after it checks).
      for (const s of serves) await waitFor("every instance sees it", () => gauge(s) === "1");
      // Whatever each instance published before now has arrived (one connection, in order).
      for (const s of serves) await heldBeforeSentinel(s.source.client, topic, received);
      const opened = events(received);
      assert.equal(opened.length, 1, JSON.stringify(opened));
      assert.deepEqual([opened[0].event, opened[0].kind], ["opened", "stale"]);
      const [{ n }] = await db.sql`select count(*)::int as n from feed_alerts`;
      assert.equal(n, 1);
    } finally {
      await endClient(sub, true);
      for (const s of serves) await s.stop();
      await db.close();
    }
  },
});

Deno.test("a capture replayed twice opens its alerts once; a dry run opens none", async () => {
  const db = await createTestDatabase();
  const dir = await Deno.makeTempDir({ prefix: "feedline-alerts-test-" });
  const replay = (args: string[]) =>
    runReplay(
      parseReplayArgs(
        ["--database-url", db.url, "--db-pool-size", "2", "--progress", "off", ...args],
        {},
      ),
      { out: () => {}, err: () => {}, errIsTerminal: false },
    );
  try {
    const user = crypto.randomUUID();
    await db.sql`insert into users (id) values (${user})`;
    await db.sql`insert into devices (user_id, code) values (${user}, 'dev1')`;
    await db.sql`
      insert into feeds (user_id, key, threshold_max, threshold_mode)
      values (${user}, 'temp', 50, 'alert')`;
    // Untimed readings take their captured receive time, as in serve.
    const values = [20, 70, 75, 30, 90, 10];
    const file = `${dir}/capture.jsonl`;
    await Deno.writeTextFile(
      file,
      values.map((v, i) =>
        encodeCaptureLine({
          topic: `${user}/dev1/feeds/temp`,
          payload: new TextEncoder().encode(String(v)),
          qos: 1,
          retain: false,
          receivedAtUs: (T0 + i * 1000) * 1000,
        }) + "\n"
      ).join(""),
    );
    const table = () =>
      db.sql`
        select kind, since, opened_at, closed_at, peak_value, updated_at from feed_alerts
        order by since`;
    const state = () => db.sql`select alert_seen_at, alert_pending_kind from feeds`;

    await replay(["--dry-run", file]);
    assert.equal((await table()).length, 0, "a dry run stores no reading, so no alert");

    await replay(["--batch-size", "2", file]);
    const first = await table();
    assert.deepEqual(
      first.map((a) => [a.since.getTime() - T0, a.closed_at?.getTime() - T0, a.peak_value]),
      [[1000, 3000, 75], [4000, 5000, 90]],
    );
    const stateAfterFirst = await state();
    await replay([file]);
    assert.deepEqual(await table(), first, "the second replay changes no alert");
    assert.deepEqual(await state(), stateAfterFirst);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await db.close();
  }
});

/**
 * QoS 2 with a backlog (issue 20): a broker that sends more unacknowledged QoS 2 messages
 * than the Receive Maximum serve announced must not tear the connection down, and the
 * backlog must drain exactly once: untimed readings, so a second copy would be a second row.
 * A SIGKILL mid-drain loses nothing; only what was committed as it struck may come again.
 */
import assert from "node:assert/strict";
import { freePort, startMosquitto } from "./support/broker.ts";
import { startServeFixture } from "./support/fixture.ts";
import { type HeldLock, lockFeedValues } from "./support/lock.ts";
import { type LogLine, recordingLogger } from "./support/logs.ts";
import { parsePrometheusText } from "./support/prometheus.ts";
import {
  HAVE_MOSQUITTO,
  prefixedTopicArgs,
  publish,
  spawnServe,
  startTestServe,
  type TestServe,
  waitFor,
} from "./support/serve.ts";

const BACKLOG = 5_000;

/**
 * Publishes `0..n-1` as plain untimed readings at QoS 2, as many at a time as the broker's
 * Receive Maximum allows (Mosquitto disconnects a publisher that sends more).
 */
async function publishBacklog(
  pub: Parameters<typeof publish>[0],
  topic: string,
  n: number,
): Promise<void> {
  const window = 20; // the Receive Maximum Mosquitto announces to publishers by default
  let next = 0;
  await Promise.all(Array.from({ length: window }, async () => {
    while (next < n) await publish(pub, topic, String(next++), { qos: 2 });
  }));
}

Deno.test({
  name: "a QoS 2 backlog beyond the Receive Maximum drains once, without a reconnect",
  ignore: !HAVE_MOSQUITTO,
  async fn() {
    // No cap on what the broker queues for serve while it is away (the default is 1,000).
    const mosquitto = await startMosquitto({ config: "max_queued_messages 0" });
    const args = ["--qos", "2", "--batch-interval-ms", "50"];
    const f = await startServeFixture({ broker: { url: mosquitto.url, protocolVersion: 5 }, args });
    let again: TestServe | null = null;
    try {
      // Stopped cleanly: the session (and its subscription) stays with the broker.
      await f.serve.stop();
      const topic = f.serve.feedTopic(f.user, "d1", "temp");
      await publishBacklog(f.pub, topic, BACKLOG);

      const logs: LogLine[] = [];
      again = await startTestServe({
        databaseUrl: f.db.url,
        mqttUrl: mosquitto.url,
        protocolVersion: 5,
        prefix: f.serve.prefix,
        args,
        log: recordingLogger(logs),
      });
      const distinct = async () =>
        (await f.db.sql`select count(distinct value)::int as n from feed_values`)[0].n;
      const reconnected = () => logs.some((l) => /^broker connection lost/.test(l.msg));
      await waitFor("the backlog to be stored", async () => {
        assert.ok(!reconnected(), "the connection was dropped");
        return (await distinct()) === BACKLOG;
      }, 30_000);
      await waitFor("every ack sent", () => again!.pipeline.unacked === 0);
      assert.equal(await f.storedCount(), BACKLOG, "each reading stored once");
      assert.equal(
        logs.filter((l) => l.msg === "connected to broker").length,
        1,
        `one connection, no reconnect: ${JSON.stringify(logs.filter((l) => l.level !== "info"))}`,
      );
      assert.ok(
        logs.some((l) => l.level === "warn" && /Receive Maximum/.test(l.msg)),
        "the broker's excess is said in one line",
      );
    } finally {
      await again?.stop();
      await f.close();
      await mosquitto.close();
    }
  },
});

Deno.test({
  name: "a QoS 2 backlog, serve killed mid-drain with a full queue and a batch: after the " +
    "restart every message is stored; only what was committed at the kill may come twice",
  // A real PostgreSQL too: the embedded PGlite keeps the killed serve's transaction open
  // on its one backend, and the restarted serve waits on it.
  ignore: !HAVE_MOSQUITTO || !Deno.env.get("TEST_DATABASE_URL"),
  async fn() {
    const mosquitto = await startMosquitto({ config: "max_queued_messages 0" });
    const [queueSize, batchSize] = [500, 200];
    const args = [
      ...["--qos", "2", "--batch-interval-ms", "50", "--batch-size", String(batchSize)],
      ...["--queue-size", String(queueSize)],
    ];
    const f = await startServeFixture({ broker: { url: mosquitto.url, protocolVersion: 5 }, args });
    const env = { DATABASE_URL: f.db.url, MQTT_URL: mosquitto.url };
    const httpPort = await freePort();
    const processArgs = [
      ...["--client-id", `feedline-test-${f.serve.prefix}`, "--mqtt-protocol", "5"],
      ...["--session-expiry", "30", "--http", `127.0.0.1:${httpPort}`],
      ...prefixedTopicArgs(f.serve.prefix),
      ...args,
    ];
    let lock: HeldLock | null = null;
    try {
      await f.serve.stop();
      const topic = f.serve.feedTopic(f.user, "d1", "temp");
      await publishBacklog(f.pub, topic, BACKLOG);

      const first = spawnServe(processArgs, env);
      await waitFor("a part of the backlog stored", async () => (await f.storedCount()) >= 1000);
      // Hold the writer, so the process is killed with full hands: a full queue, a batch.
      lock = await lockFeedValues(f.db);
      await waitFor("the queue to fill", async () => {
        const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
        return parsePrometheusText(text).value("feedline_queue_depth_data") >= queueSize;
      });
      // And the next batch waiting on the lock: killed with a batch in hand.
      await waitFor("the next batch to wait on the lock", async () =>
        (await f.db.sql`
          select 1 from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock'
            and query like '%insert into feed_values%'`).length > 0);
      const [{ n: storedBeforeKill }] = await f.db.sql<{ n: number }[]>`
        select count(*)::int as n from feed_values`;
      assert.equal(await first.signal("SIGKILL"), 137);
      await lock.release();
      const connects = first.logs.filter((l) => l.msg === "connected to broker").length;
      assert.equal(connects, 1, "the first process never reconnected");

      const second = spawnServe(processArgs, env);
      try {
        await second.waitForLog("connected to broker");
        // Published now, it arrives after the rest of the session.
        await publish(f.pub, topic, String(BACKLOG), { qos: 2 });
        const stored = async (v: number) =>
          (await f.db.sql`select 1 from feed_values where value = ${v}`).length > 0;
        await waitFor("the sentinel", () => stored(BACKLOG), 30_000);
      } finally {
        assert.equal(await second.signal("SIGTERM"), 0);
      }
      const rows = await f.db.sql<{ value: number; n: number }[]>`
        select value, count(*)::int as n from feed_values group by value order by value`;
      // The documented window of an untimed reading (docs/delivery.md, "Per QoS"): the
      // batches committed just before the kill may not have had their PUBRECs reach the
      // broker (written, but still in the process or the socket when it died; seen for one
      // to three batches, about 1 run in 8 of a parallel suite), so the broker sends them
      // again and they are stored again. Only those: values stored before the kill.
      const twice = rows.filter((r) => r.n > 1).map((r) => r.value);
      assert.ok(
        twice.every((v) => v < storedBeforeKill),
        `stored twice, but not stored before the kill (${storedBeforeKill}): ${twice}`,
      );
      assert.ok(rows.every((r) => r.n <= 2), "no reading stored three times");
      // The killed process had sent PUBREC for nothing it had not committed
      // (docs/delivery.md, "Per QoS"), so the broker sent all of that again: nothing is
      // missing. (With PUBREC on receipt, the broker resends only PUBREL, and 3,900 of
      // the 5,000 were gone.)
      assert.equal(rows.length, BACKLOG + 1, "every message stored");
    } finally {
      await lock?.release();
      await f.close();
      await mosquitto.close();
    }
  },
});

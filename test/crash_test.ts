/**
 * Crash safety and graceful shutdown of a real `serve` process under sustained QoS 1
 * traffic, against a Mosquitto of the test's own (with persistence, so the session and
 * its backlog survive).
 */
import assert from "node:assert/strict";
import mqtt from "mqtt";
import { auditedProcess, openBooks } from "./support/audit.ts";
import { startMosquitto } from "./support/broker.ts";
import { createTestDatabase } from "./support/db.ts";
import {
  connectClient,
  endClient,
  HAVE_MOSQUITTO,
  heldBeforeSentinel,
  prefixedTopicArgs,
  publish,
  spawnServe,
  uniquePrefix,
  waitFor,
} from "./support/serve.ts";

const BASE_TS = 1_767_225_600_000;

function serveArgs(
  prefix: string,
  dbUrl: string,
  mqttUrl: string,
): { args: string[]; env: Record<string, string> } {
  return {
    args: [
      // On a free port: its /metrics explain a failure (see the SIGKILL test).
      "--http",
      "127.0.0.1:0",
      "--client-id",
      `feedline-crash-${prefix}`,
      "--batch-interval-ms",
      "50",
      "--session-expiry",
      "300",
      ...prefixedTopicArgs(prefix),
    ],
    env: { DATABASE_URL: dbUrl, MQTT_URL: mqttUrl },
  };
}

/**
 * A fresh database with one user and feed "temp", a Mosquitto of the test's own with
 * persistence, serve spawned on it (`spawnAgain()` starts another with the same session),
 * and a QoS 1 publisher.
 */
async function startCrashRig() {
  const db = await createTestDatabase();
  // No queue limit: with Mosquitto's default (max_queued_messages 1000) the broker drops
  // QoS 1 messages queued for the restarting serve once more than 1000 wait, as happens on
  // a loaded machine, and the test would see loss that is the broker's
  // (docs/delivery.md, "What the broker must be configured for").
  const mosquitto = await startMosquitto({ persistence: true, config: "max_queued_messages 0" });
  const prefix = uniquePrefix();
  const user = crypto.randomUUID();
  await db.sql`insert into users (id) values (${user})`;
  await db.sql`insert into feeds (user_id, key) values (${user}, 'temp')`;
  const { args, env } = serveArgs(prefix, db.url, mosquitto.url);
  // The books of every serve of the rig, from before the first starts.
  const books = await openBooks(db.url);
  const serve = spawnServe(args, env);
  const pub = await connectClient(mosquitto.url, 5);
  return {
    db,
    books,
    mosquitto,
    prefix,
    serve,
    pub,
    topic: `${prefix}/${user}/d1/feeds/temp`,
    spawnAgain: () => spawnServe(args, env),
    /** Rows in feed_values. */
    async storedCount(): Promise<number> {
      const [{ n }] = await db.sql`select count(*)::int as n from feed_values`;
      return n;
    },
  };
}

Deno.test({
  name:
    "serve killed with SIGKILL under QoS 1 load and restarted stores every acknowledged reading exactly once",
  ignore: !HAVE_MOSQUITTO,
  async fn() {
    const rig = await startCrashRig();
    const { db, mosquitto, pub, topic } = rig;
    let serve = rig.serve;
    const total = 3000;
    let acked = 0;
    try {
      await serve.waitForLog("subscribed");
      const publishing = (async () => {
        for (let i = 0; i < total; i += 50) {
          await Promise.all(
            Array.from(
              { length: 50 },
              (_, k) =>
                publish(pub, topic, JSON.stringify({ value: i + k, ts: BASE_TS + i + k })).then(
                  () => acked++,
                ),
            ),
          );
          // Pacing, not waiting: the kill below lands while readings still arrive.
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      await waitFor(
        "some readings to be stored",
        async () => await rig.storedCount() >= 300,
        30_000,
      );
      assert.equal(await serve.signal("SIGKILL"), 137);
      const killed = serve;
      serve = rig.spawnAgain();
      await publishing;
      assert.equal(acked, total, "the broker acknowledged every publish");
      try {
        await waitFor(
          "every acknowledged reading",
          async () => await rig.storedCount() === total,
          60_000,
        );
      } catch (error) {
        // What the two processes said, so a failure here can be understood afterwards.
        const tail = (logs: Record<string, unknown>[]) =>
          logs.slice(-25).map((l) => JSON.stringify(l)).join("\n");
        console.error(`stored ${await rig.storedCount()} of ${total}`);
        console.error(`killed serve's last log lines:\n${tail(killed.logs)}`);
        console.error(`restarted serve's last log lines:\n${tail(serve.logs)}`);
        const http = serve.logs.find((l) => l.msg === "http listening");
        if (http) {
          const text = await (await fetch(String(http.metrics))).text();
          const wanted =
            /^feedline_(messages_received|unacked|queue_depth|in_flight|batches|batch_errors|message_outcomes|broker|messages_discarded)/;
          console.error(text.split("\n").filter((l) => wanted.test(l)).join("\n"));
        }
        throw error;
      }
      const [{ distinct }] = await db
        .sql`select count(distinct created_at)::int as distinct from feed_values`;
      assert.equal(distinct, total, "each reading stored once");
      // The killed serve reported nothing: the tables must hold at least what the
      // restarted one counted (test/support/audit.ts).
      assert.equal(await serve.signal("SIGTERM"), 0);
      await rig.books.verify([auditedProcess(killed, "killed serve"), auditedProcess(serve)]);
    } finally {
      await endClient(pub);
      await serve.signal("SIGTERM");
      await mosquitto.close();
      await db.close();
    }
  },
});

Deno.test({
  name: "SIGTERM under load writes and acknowledges everything received before exiting 0",
  ignore: !HAVE_MOSQUITTO,
  async fn() {
    const rig = await startCrashRig();
    const { db, mosquitto, prefix, serve, pub, topic } = rig;
    let resumed: mqtt.MqttClient | null = null;
    try {
      await serve.waitForLog("subscribed");
      let stop = false;
      let sent = 0;
      const publishing = (async () => {
        while (!stop) {
          await Promise.all(
            Array.from({ length: 20 }, () => {
              const i = sent++;
              return publish(pub, topic, JSON.stringify({ value: i, ts: BASE_TS + i }));
            }),
          );
        }
      })();
      await waitFor("traffic to flow", async () => await rig.storedCount() >= 200, 30_000);
      assert.equal(await serve.signal("SIGTERM"), 0);
      stop = true;
      await publishing;
      const stopped = serve.logs.find((l) => l.msg === "stopped")!;
      assert.ok(stopped, "serve logs its accounting when it stops");
      assert.equal(stopped.unwritten, 0);
      assert.equal(stopped.queued, 0);
      assert.equal(
        stopped.received,
        (stopped.stored as number) + (stopped.rejected as number) + (stopped.skipped as number) +
          (stopped.dropped as number) + (stopped.discarded as number),
      );

      // Whatever the broker still holds for serve's session must not be stored yet:
      // nothing was both written and left unacknowledged.
      const received: { topic: string; payload: string }[] = [];
      resumed = mqtt.connect(mosquitto.url, {
        protocolVersion: 5,
        clientId: `feedline-crash-${prefix}`,
        clean: false,
        reconnectPeriod: 0,
        properties: { sessionExpiryInterval: 300 },
      });
      resumed.on("message", (t, payload) => received.push({ topic: t, payload: String(payload) }));
      await new Promise<void>((resolve) => resumed!.once("connect", () => resolve()));
      const redelivered = (await heldBeforeSentinel(pub, topic, received))
        .map((m) => JSON.parse(m.payload).value);
      const stored = await db.sql`select value from feed_values`;
      const storedValues = new Set(stored.map((r) => r.value));
      assert.equal(stored.length, stopped.stored, "serve's count matches the table");
      const both = redelivered.filter((v) => storedValues.has(v));
      assert.deepEqual(both, [], "stored and still unacknowledged");
      assert.equal(
        stored.length + redelivered.length,
        sent,
        "every published reading is stored or still at the broker",
      );
      await rig.books.verify([auditedProcess(serve)]);
    } finally {
      if (resumed) await endClient(resumed, true);
      await endClient(pub);
      await serve.signal("SIGKILL");
      await mosquitto.close();
      await db.close();
    }
  },
});

/**
 * Nothing lost: faults injected for real (a cut database connection, a broker restart,
 * full queues, a held transaction) and the guarantees checked afterwards in the
 * database and in the accounting equation.
 */
import assert from "node:assert/strict";
import type { MqttClient } from "mqtt";
import { accounting } from "../src/ingest_metrics.ts";
import { createTestBroker, startMosquitto } from "./support/broker.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { hostPort, startFaultProxy, viaProxy } from "./support/proxy.ts";
import {
  connectClient,
  endClient,
  HAVE_MOSQUITTO,
  publish,
  startTestServe,
  type TestServe,
  userId,
  waitFor,
} from "./support/serve.ts";

async function registerFeed(db: TestDatabase, user: string, key = "temp") {
  await db.sql`insert into users (id) values (${user}) on conflict do nothing`;
  await db.sql`insert into feeds (user_id, key) values (${user}, ${key})`;
}

async function storedCount(db: TestDatabase): Promise<number> {
  const [{ n }] = await db.sql`select count(*)::int as n from feed_values`;
  return n;
}

/** A reading with its own timestamp, so redeliveries are recognisable duplicates. */
function reading(i: number): string {
  return JSON.stringify({ value: i, ts: 1_767_225_600_000 + i });
}

async function publishMany(
  client: MqttClient,
  topic: string,
  from: number,
  to: number,
  qos: 0 | 1 = 1,
) {
  await Promise.all(
    Array.from({ length: to - from }, (_, k) => publish(client, topic, reading(from + k), { qos })),
  );
}

function assertBalanced(serve: TestServe) {
  const a = accounting(serve.metrics, serve.pipeline.queued, serve.pipeline.inFlight);
  assert.ok(a.balanced, `accounting does not balance: ${JSON.stringify(a)}`);
}

async function readyz(port: number): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`);
  return { status: res.status, body: await res.json() };
}

Deno.test("while the database is unreachable serve holds the messages, stops taking more and writes them all when it returns", async () => {
  const db = await createTestDatabase();
  const proxy = await startFaultProxy(hostPort(db.url));
  const broker = await createTestBroker();
  const user = userId();
  await registerFeed(db, user);
  const serve = await startTestServe({
    databaseUrl: viaProxy(db.url, proxy),
    mqttUrl: broker.url,
    protocolVersion: broker.protocolVersion,
    args: [
      "--batch-interval-ms",
      "50",
      "--batch-size",
      "10",
      "--queue-size",
      "20",
      "--http",
      "127.0.0.1:0",
    ],
  });
  const pub = await connectClient(broker.url, broker.protocolVersion);
  const topic = serve.feedTopic(user, "d1", "temp");
  try {
    await publishMany(pub, topic, 0, 10);
    await waitFor("the first 10 readings", async () => (await storedCount(db)) === 10);

    proxy.cut();
    const publishing = publishMany(pub, topic, 10, 200);
    await waitFor("readyz to report the database down", async () => {
      const r = await readyz(serve.httpPort!);
      return r.status === 503 && r.body.database === false && r.body.broker === true;
    });
    await new Promise((r) => setTimeout(r, 500));
    // Back-pressure: at most a queue and a batch are held; the broker keeps the rest.
    const held = serve.metrics.received.total() - 10;
    assert.ok(held <= 20 + 10, `serve took ${held} messages while the database was down`);
    assert.equal(serve.metrics.dropped.total(), 0);
    assert.equal(await storedCount(db), 10);

    proxy.restore();
    await publishing;
    await waitFor("all 200 readings", async () => (await storedCount(db)) === 200, 30_000);
    await waitFor(
      "readyz to report ready again",
      async () => (await readyz(serve.httpPort!)).status === 200,
      15_000,
    );
    await waitFor(
      "the queues to empty",
      () => serve.pipeline.queued + serve.pipeline.inFlight === 0,
    );
    assertBalanced(serve);
  } finally {
    await endClient(pub);
    await serve.stop();
    await proxy.close();
    await broker.close();
    await db.close();
  }
});

Deno.test({
  name: "after a broker restart serve resubscribes and loses nothing published meanwhile",
  ignore: !HAVE_MOSQUITTO,
  async fn() {
    const db = await createTestDatabase();
    const mosquitto = await startMosquitto({ persistence: true });
    const user = userId();
    await registerFeed(db, user);
    const serve = await startTestServe({
      databaseUrl: db.url,
      mqttUrl: mosquitto.url,
      protocolVersion: 5,
      args: ["--batch-interval-ms", "50"],
    });
    const topic = serve.feedTopic(user, "d1", "temp");
    let pub = await connectClient(mosquitto.url, 5);
    try {
      await publishMany(pub, topic, 0, 50);
      await waitFor("the first 50 readings", async () => (await storedCount(db)) === 50);
      await endClient(pub, true);

      await mosquitto.stop();
      await waitFor("serve to notice", () => !serve.source.connected);
      await mosquitto.restart();
      // Published before serve is back: the broker queues them in serve's session.
      pub = await connectClient(mosquitto.url, 5);
      await publishMany(pub, topic, 50, 100);
      await waitFor("all 100 readings", async () => (await storedCount(db)) === 100, 30_000);
      await waitFor("serve to be subscribed again", () => serve.source.subscribed);
      assertBalanced(serve);
    } finally {
      await endClient(pub, true);
      await serve.stop();
      await mosquitto.close();
      await db.close();
    }
  },
});

Deno.test("full queues hold QoS 1 messages back at the broker and drop nothing", async () => {
  const db = await createTestDatabase();
  const broker = await createTestBroker();
  const user = userId();
  await registerFeed(db, user);
  const serve = await startTestServe({
    databaseUrl: db.url,
    mqttUrl: broker.url,
    protocolVersion: broker.protocolVersion,
    args: ["--batch-interval-ms", "20", "--batch-size", "5", "--queue-size", "10"],
  });
  const pub = await connectClient(broker.url, broker.protocolVersion);
  const blocker = await db.sql.reserve();
  try {
    await blocker`begin`;
    await blocker`lock table feed_values in exclusive mode`;
    const publishing = publishMany(pub, serve.feedTopic(user, "d1", "temp"), 0, 200);
    await waitFor("the queue to fill", () => serve.pipeline.dataQueued >= 10);
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(serve.pipeline.dataQueued <= 10);
    assert.ok(serve.metrics.received.total() <= 15, `took ${serve.metrics.received.total()}`);
    await blocker`rollback`;
    await publishing;
    await waitFor("all 200 readings", async () => (await storedCount(db)) === 200, 30_000);
    assert.equal(serve.metrics.dropped.total(), 0);
    assertBalanced(serve);
  } finally {
    blocker.release();
    await endClient(pub);
    await serve.stop();
    await broker.close();
    await db.close();
  }
});

Deno.test("QoS 0 messages that find the queue full are dropped and counted, never silently", async () => {
  const db = await createTestDatabase();
  const broker = await createTestBroker();
  const user = userId();
  await registerFeed(db, user);
  const serve = await startTestServe({
    databaseUrl: db.url,
    mqttUrl: broker.url,
    protocolVersion: broker.protocolVersion,
    args: ["--qos", "0", "--batch-interval-ms", "20", "--batch-size", "5", "--queue-size", "10"],
  });
  const pub = await connectClient(broker.url, broker.protocolVersion);
  const blocker = await db.sql.reserve();
  try {
    await blocker`begin`;
    await blocker`lock table feed_values in exclusive mode`;
    await publishMany(pub, serve.feedTopic(user, "d1", "temp"), 0, 200, 0);
    await waitFor("every message to be received", () => serve.metrics.received.total() === 200);
    await blocker`rollback`;
    await waitFor(
      "the queues to empty",
      () => serve.pipeline.queued + serve.pipeline.inFlight === 0,
    );
    const dropped = serve.metrics.dropped.get({ reason: "queue_full" });
    assert.ok(dropped > 0, "some messages must have found the queue full");
    assert.equal(await storedCount(db) + dropped, 200);
    assertBalanced(serve);
  } finally {
    blocker.release();
    await endClient(pub);
    await serve.stop();
    await broker.close();
    await db.close();
  }
});

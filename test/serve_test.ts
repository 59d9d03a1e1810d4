import assert from "node:assert/strict";
import mqtt, { type MqttClient } from "mqtt";
import { createTestBroker } from "./support/broker.ts";
import { createTestDatabase } from "./support/db.ts";
import {
  connectClient,
  endClient,
  publish,
  startTestServe,
  userId,
  waitFor,
} from "./support/serve.ts";

Deno.test("a message published over MQTT lands in feed_values and moves last_value", async () => {
  const db = await createTestDatabase();
  const broker = await createTestBroker();
  const user = userId();
  await db.sql`insert into users (id) values (${user})`;
  await db.sql`insert into feeds (user_id, key) values (${user}, 'temp')`;
  const serve = await startTestServe({
    databaseUrl: db.url,
    mqttUrl: broker.url,
    protocolVersion: broker.protocolVersion,
    args: ["--batch-interval-ms", "100"],
  });
  const pub = await connectClient(broker.url, broker.protocolVersion);
  try {
    await publish(pub, serve.feedTopic(user, "dev1", "temp"), "21.5");
    await publish(
      pub,
      serve.feedTopic(user, "dev1", "temp"),
      '{"value": 22, "ts": "2025-01-01T00:00:00Z"}',
    );
    await waitFor(
      "two stored rows",
      async () => (await db.sql`select count(*)::int as n from feed_values`)[0].n === 2,
    );
    const [feed] = await db
      .sql`select last_value from feeds where user_id = ${user} and key = 'temp'`;
    assert.equal(feed.last_value, "21.5");
  } finally {
    await endClient(pub);
    await serve.stop();
    await broker.close();
    await db.close();
  }
});

Deno.test("a QoS 1 message is acknowledged only after its batch commits", async () => {
  const db = await createTestDatabase();
  const broker = await createTestBroker();
  const user = userId();
  await db.sql`insert into users (id) values (${user})`;
  await db.sql`insert into feeds (user_id, key) values (${user}, 'temp')`;
  const serve = await startTestServe({
    databaseUrl: db.url,
    mqttUrl: broker.url,
    protocolVersion: broker.protocolVersion,
    args: ["--batch-interval-ms", "50"],
  });
  const clientId = `feedline-test-${serve.prefix}`;
  const pub = await connectClient(broker.url, broker.protocolVersion);
  const blocker = await db.sql.reserve();
  let resumed: MqttClient | null = null;
  try {
    // Hold the batch inside its transaction: its insert waits on this lock.
    await blocker`begin`;
    await blocker`lock table feed_values in exclusive mode`;
    await publish(pub, serve.feedTopic(user, "d1", "temp"), "1");
    await waitFor("the batch to be in flight", () => serve.pipeline.inFlight === 1);
    // Crash the connection while the batch is uncommitted, then let the commit happen.
    serve.source.client.end(true);
    await blocker`rollback`;
    await waitFor(
      "the row to commit",
      async () => (await db.sql`select count(*)::int as n from feed_values`)[0].n === 1,
    );
    // The broker never got a PUBACK: the same session gets the message again.
    const redelivered: string[] = [];
    resumed = mqtt.connect(broker.url, {
      protocolVersion: broker.protocolVersion,
      clientId,
      clean: false,
      reconnectPeriod: 0,
      properties: broker.protocolVersion === 5 ? { sessionExpiryInterval: 60 } : undefined,
    });
    resumed.on("message", (topic) => redelivered.push(topic));
    await waitFor("the unacknowledged message to be redelivered", () => redelivered.length === 1);
    assert.deepEqual(redelivered, [serve.feedTopic(user, "d1", "temp")]);
  } finally {
    blocker.release();
    if (resumed) await endClient(resumed, true);
    await endClient(pub);
    await serve.stop();
    await broker.close();
    await db.close();
  }
});

Deno.test("a committed QoS 1 message is acknowledged: a resumed session gets nothing again", async () => {
  const db = await createTestDatabase();
  const broker = await createTestBroker();
  const user = userId();
  await db.sql`insert into users (id) values (${user})`;
  await db.sql`insert into feeds (user_id, key) values (${user}, 'temp')`;
  const serve = await startTestServe({
    databaseUrl: db.url,
    mqttUrl: broker.url,
    protocolVersion: broker.protocolVersion,
    args: ["--batch-interval-ms", "50"],
  });
  const clientId = `feedline-test-${serve.prefix}`;
  const pub = await connectClient(broker.url, broker.protocolVersion);
  let resumed: MqttClient | null = null;
  try {
    await publish(pub, serve.feedTopic(user, "d1", "temp"), "1");
    await waitFor(
      "the row to commit",
      async () => (await db.sql`select count(*)::int as n from feed_values`)[0].n === 1,
    );
    await waitFor("the ack to be sent", () => serve.pipeline.unacked === 0);
    await new Promise((r) => setTimeout(r, 100)); // let the PUBACK reach the broker
    serve.source.client.end(true);
    const redelivered: string[] = [];
    resumed = mqtt.connect(broker.url, {
      protocolVersion: broker.protocolVersion,
      clientId,
      clean: false,
      reconnectPeriod: 0,
      properties: broker.protocolVersion === 5 ? { sessionExpiryInterval: 60 } : undefined,
    });
    resumed.on("message", (topic) => redelivered.push(topic));
    await new Promise<void>((resolve) => resumed!.once("connect", () => resolve()));
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(redelivered, []);
  } finally {
    if (resumed) await endClient(resumed, true);
    await endClient(pub);
    await serve.stop();
    await broker.close();
    await db.close();
  }
});

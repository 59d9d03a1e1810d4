import assert from "node:assert/strict";
import mqtt, { type MqttClient } from "mqtt";
import { startServeFixture } from "./support/fixture.ts";
import { brokerHasRead, endClient, heldBeforeSentinel, publish, waitFor } from "./support/serve.ts";
import { proxiedUrl, type TcpProxy } from "./support/tcp_proxy.ts";

/** Connects as serve's own client id, resuming its session, and collects what arrives. */
async function resumeSession(
  broker: { url: string; protocolVersion: 4 | 5 },
  clientId: string,
): Promise<{ client: MqttClient; messages: { topic: string; payload: string }[] }> {
  const messages: { topic: string; payload: string }[] = [];
  const client = mqtt.connect(broker.url, {
    protocolVersion: broker.protocolVersion,
    clientId,
    clean: false,
    reconnectPeriod: 0,
    properties: broker.protocolVersion === 5 ? { sessionExpiryInterval: 60 } : undefined,
  });
  client.on("message", (topic, payload) => messages.push({ topic, payload: String(payload) }));
  await new Promise<void>((resolve) => client.once("connect", () => resolve()));
  return { client, messages };
}

Deno.test("a message published over MQTT lands in feed_values and moves last_value", async () => {
  const f = await startServeFixture({ args: ["--batch-interval-ms", "100"] });
  try {
    const topic = f.serve.feedTopic(f.user, "dev1", "temp");
    await publish(f.pub, topic, "21.5");
    await publish(f.pub, topic, '{"value": 22, "ts": "2025-01-01T00:00:00Z"}');
    await waitFor("two stored rows", async () => (await f.storedCount()) === 2);
    const [feed] = await f.db
      .sql`select value as last_value from feeds join feed_latest_values on feed_id = id where key = 'temp'`;
    assert.equal(feed.last_value, "21.5", "the older device reading does not overwrite");
  } finally {
    await f.close();
  }
});

Deno.test("a QoS 1 message is acknowledged only after its batch commits", async () => {
  const f = await startServeFixture({ args: ["--batch-interval-ms", "50"] });
  const blocker = await f.db.sql.reserve();
  let resumed: MqttClient | null = null;
  try {
    // Hold the batch inside its transaction: its insert waits on this lock.
    await blocker`begin`;
    await blocker`lock table feed_values in exclusive mode`;
    const topic = f.serve.feedTopic(f.user, "d1", "temp");
    await publish(f.pub, topic, "1");
    await waitFor("the batch to be in flight", () => f.serve.pipeline.inFlight === 1);
    // Crash the connection while the batch is uncommitted, then let the commit happen.
    f.serve.source.client.end(true);
    await blocker`rollback`;
    await waitFor("the row to commit", async () => (await f.storedCount()) === 1);
    // The broker never got a PUBACK: the same session gets the message again.
    const session = await resumeSession(f.broker, `feedline-test-${f.serve.prefix}`);
    resumed = session.client;
    await waitFor(
      "the unacknowledged message to be redelivered",
      () => session.messages.length === 1,
    );
    assert.deepEqual(session.messages, [{ topic, payload: "1" }]);
  } finally {
    blocker.release();
    if (resumed) await endClient(resumed, true);
    await f.close();
  }
});

Deno.test("a committed QoS 1 message is acknowledged: a resumed session gets nothing again", async () => {
  const f = await startServeFixture({ args: ["--batch-interval-ms", "50"] });
  let resumed: MqttClient | null = null;
  try {
    const topic = f.serve.feedTopic(f.user, "d1", "temp");
    await publish(f.pub, topic, "1");
    await waitFor("the row to commit", async () => (await f.storedCount()) === 1);
    await waitFor("the ack to be sent", () => f.serve.pipeline.unacked === 0);
    await brokerHasRead(f.serve.source.client);
    f.serve.source.client.end(true);
    const session = await resumeSession(f.broker, `feedline-test-${f.serve.prefix}`);
    resumed = session.client;
    assert.deepEqual(await heldBeforeSentinel(f.pub, topic, session.messages), []);
  } finally {
    if (resumed) await endClient(resumed, true);
    await f.close();
  }
});

Deno.test("a backlog the broker sends right behind the CONNACK of a reconnect is stored and acknowledged", async () => {
  let proxy!: TcpProxy;
  const f = await startServeFixture({
    // serve reaches the broker through a proxy the test can cut; the publisher does not.
    mqttUrl: (broker) => proxiedUrl(broker.url, (p) => proxy = p),
    args: ["--batch-interval-ms", "50"],
  });
  let resumed: MqttClient | null = null;
  try {
    const topic = f.serve.feedTopic(f.user, "d1", "temp");
    const reading = (i: number) => JSON.stringify({ value: i, ts: 1_767_225_600_000 + i });
    await publish(f.pub, topic, reading(0));
    await waitFor("the first reading", async () => (await f.storedCount()) === 1);

    proxy.cut();
    await waitFor("serve to lose the broker", () => !f.serve.source.connected);
    // Queued by the broker in serve's session; sent as soon as serve is back, in the
    // packets right behind the CONNACK, before MQTT.js emits `connect`.
    const backlog = 30;
    for (let i = 1; i <= backlog; i++) await publish(f.pub, topic, reading(i));
    // Something in MQTT.js's outgoing store (a QoS 1 publish of serve's own, made while
    // offline): on reconnect MQTT.js resends it and emits `connect` only once the broker
    // has acknowledged it, while the backlog is already being handed over. This is what
    // makes the race certain rather than a matter of how the packets are split.
    const ownPublish = publish(
      f.serve.source.client,
      `${f.serve.prefix}/not-subscribed`,
      "x",
      { qos: 1 },
    );
    proxy.restore();
    await ownPublish;
    await waitFor(
      "the backlog to be stored",
      async () => (await f.storedCount()) === 1 + backlog,
      20_000,
    );
    assert.equal(
      f.serve.metrics.discarded.get({ reason: "redelivered" }),
      0,
      "no message of the new connection was taken for a stale copy",
    );
    await waitFor("no ack outstanding", () => f.serve.pipeline.unacked === 0);
    await brokerHasRead(f.serve.source.client);
    f.serve.source.client.end(true);
    const session = await resumeSession(f.broker, `feedline-test-${f.serve.prefix}`);
    resumed = session.client;
    assert.deepEqual(
      await heldBeforeSentinel(f.pub, topic, session.messages),
      [],
      "every message of the backlog was acknowledged",
    );
  } finally {
    if (resumed) await endClient(resumed, true);
    await f.close();
    await proxy.close();
  }
});

/**
 * No single message may stop ingest (issue 10): when feedline itself fails on a message,
 * that message is dead-lettered or dropped and counted, it is acknowledged so the broker
 * cannot hand it back to fail again, and every other message goes on being stored.
 */
import assert from "node:assert/strict";
import mqtt, { type MqttClient } from "mqtt";
import { decode } from "../src/core/decode.ts";
import { accountingTerms } from "../src/ingest/accounting.ts";
import { createServeLogger } from "../src/ops/serve_logger.ts";
import { type ServeFixture, startServeFixture } from "./support/fixture.ts";
import { brokerHasRead, endClient, heldBeforeSentinel, publish, waitFor } from "./support/serve.ts";

/**
 * Ends serve's connection without a DISCONNECT, resumes its session as a plain client
 * and returns the topics the broker still had for it (unacknowledged messages).
 */
async function unacknowledgedAtBroker(f: ServeFixture): Promise<string[]> {
  await waitFor("no ack outstanding", () => f.serve.pipeline.unacked === 0);
  await brokerHasRead(f.serve.source.client);
  f.serve.source.client.end(true);
  const messages: { topic: string; payload: string }[] = [];
  const client: MqttClient = mqtt.connect(f.broker.url, {
    protocolVersion: f.broker.protocolVersion,
    clientId: `feedline-test-${f.serve.prefix}`,
    clean: false,
    reconnectPeriod: 0,
    properties: f.broker.protocolVersion === 5 ? { sessionExpiryInterval: 1 } : undefined,
  });
  client.on("message", (topic, payload) => messages.push({ topic, payload: String(payload) }));
  await new Promise<void>((resolve) => client.once("connect", () => resolve()));
  const sentinelTopic = f.serve.feedTopic(f.user, "sentinel", "temp");
  const held = await heldBeforeSentinel(f.pub, sentinelTopic, messages);
  await endClient(client, true);
  return held.map((m) => m.topic);
}

function assertBalanced(f: ServeFixture) {
  const a = accountingTerms(f.serve.metrics, f.serve.pipeline.queued, f.serve.pipeline.inFlight);
  assert.ok(a.balanced, `accounting does not balance: ${JSON.stringify(a)}`);
}

Deno.test("a decoder that throws turns its message into an internal_error reject, acknowledged after commit; the rest is stored", async () => {
  const f = await startServeFixture({
    args: ["--batch-interval-ms", "50"],
    hooks: {
      decode(inbound, opts) {
        if (new TextDecoder().decode(inbound.payload) === "boom") {
          throw new Error(`decoder exploded ${"x".repeat(2000)}`);
        }
        return decode(inbound, opts);
      },
    },
  });
  try {
    const topic = f.serve.feedTopic(f.user, "d1", "temp");
    await publish(f.pub, topic, "1");
    await publish(f.pub, topic, "boom");
    await publish(f.pub, topic, "2");
    await waitFor("three messages processed", () => f.serve.metrics.processed.total() === 3);

    assert.equal(await f.storedCount(), 2, "the messages around the poison one are stored");
    const rejects = await f.db.sql`select reason, detail, topic from ingest_rejects`;
    assert.equal(rejects.length, 1);
    assert.equal(rejects[0].reason, "internal_error");
    assert.equal(rejects[0].topic, topic);
    assert.match(rejects[0].detail, /^decode failed: Error: decoder exploded x+/);
    assert.ok(rejects[0].detail.length <= 500, `detail of ${rejects[0].detail.length} chars`);
    assert.equal(f.serve.metrics.rejected.get({ reason: "internal_error" }), 1);
    assertBalanced(f);
    assert.deepEqual(await unacknowledgedAtBroker(f), [], "every message was acknowledged");
  } finally {
    await f.close();
  }
});

Deno.test("a throw anywhere else on the delivery path is acknowledged, counted as dropped{internal_error} and logged once per interval", async () => {
  const logs: Record<string, unknown>[] = [];
  const f = await startServeFixture({
    args: ["--batch-interval-ms", "50", "--log-repeat-interval-ms", "60000"],
    log: (config) =>
      createServeLogger({ ...config, logFormat: "json" }, (line) => logs.push(JSON.parse(line))),
  });
  try {
    const topic = f.serve.feedTopic(f.user, "d1", "temp");
    const poison = f.serve.feedTopic(f.user, "poison", "temp");
    // The queue itself throws for one device's messages: a bug past the decoder.
    const pipeline = f.serve.pipeline;
    const offer = pipeline.offer.bind(pipeline);
    pipeline.offer = (pending, ack) => {
      if (pending.inbound.topic === poison) throw new Error("queue exploded");
      return offer(pending, ack);
    };
    await publish(f.pub, topic, "1");
    for (let i = 0; i < 3; i++) await publish(f.pub, poison, String(i));
    await publish(f.pub, poison, "0", { qos: 0 });
    await publish(f.pub, topic, "2");
    await waitFor("the good readings", async () => (await f.storedCount()) === 2);
    await waitFor(
      "the poison messages to be counted",
      () => f.serve.metrics.dropped.get({ reason: "internal_error" }) === 4,
    );
    assert.equal(f.serve.metrics.received.total(), 6);
    assertBalanced(f);
    const warnings = logs.filter((l) => l.msg === "message dropped: feedline failed on it");
    assert.equal(warnings.length, 1, "one line per interval, not one per message");
    assert.equal(warnings[0].topic, poison);
    assert.equal(warnings[0].error, "queue exploded");

    // Still alive and ingesting after the poison messages.
    await publish(f.pub, topic, "3");
    await waitFor("a later reading", async () => (await f.storedCount()) === 3);
    assert.deepEqual(
      await unacknowledgedAtBroker(f),
      [],
      "the poison messages were acknowledged: the broker cannot send them again",
    );
  } finally {
    await f.close();
  }
});

import assert from "node:assert/strict";
import type { MqttClient } from "mqtt";
import { startServeFixture } from "./support/fixture.ts";
import { publish, uniquePrefix, waitFor } from "./support/serve.ts";

/** Subscribes and collects the JSON messages of `topic`. */
async function collect(client: MqttClient, topic: string): Promise<Record<string, unknown>[]> {
  const got: Record<string, unknown>[] = [];
  client.on("message", (t, payload) => {
    if (t === topic) got.push(JSON.parse(payload.toString()));
  });
  await client.subscribeAsync(topic, { qos: 0 });
  return got;
}

Deno.test("a reject is published on the user's errors topic with its reason and topic, rate-limited per user", async () => {
  const prefix = uniquePrefix();
  const fixture = await startServeFixture({
    feeds: [],
    prepare: (db, user) =>
      db.sql`insert into feeds (user_id, key, threshold_max) values (${user}, 'temp', 50)`,
    prefix,
    args: [
      "--batch-interval-ms",
      "50",
      "--errors-topic",
      `${prefix}/{user_id}/errors`,
      "--errors-per-minute",
      "3",
    ],
  });
  const { db, serve, pub: device, user } = fixture;
  try {
    const errors = await collect(device, `${prefix}/${user}/errors`);
    await publish(device, serve.feedTopic(user, "dev1", "temp"), "99");
    await waitFor("the out_of_range feedback", () => errors.length === 1);
    assert.equal(errors[0].reason, "out_of_range");
    assert.equal(errors[0].topic, serve.feedTopic(user, "dev1", "temp"));
    assert.match(String(errors[0].detail), /99 outside/);
    assert.equal(errors[0].suppressed, 0);

    // Nine more rejects: the bucket of 3 a minute has 2 left, the rest are suppressed.
    for (let i = 0; i < 9; i++) {
      await publish(device, serve.feedTopic(user, "dev1", "nosuchfeed"), "1");
    }
    await waitFor("all ten rejected", () => serve.metrics.rejected.total() === 10);
    await waitFor("two more feedback messages", () => errors.length === 3);
    assert.deepEqual(errors.slice(1).map((e) => e.reason), ["unknown_feed", "unknown_feed"]);
    const counter = serve.metrics.registry.render();
    assert.match(counter, /feedline_error_feedback_total\{outcome="published"\} 3\n/);
    assert.match(counter, /feedline_error_feedback_total\{outcome="rate_limited"\} 7\n/);
    // Every reject is still in the dead letter, whatever the feedback did.
    const [{ n }] = await db.sql`select count(*)::int as n from ingest_rejects`;
    assert.equal(n, 10);
  } finally {
    await fixture.close();
  }
});

Deno.test("--errors-topic off publishes no feedback", async () => {
  const fixture = await startServeFixture({
    feeds: [],
    args: ["--batch-interval-ms", "50", "--errors-topic", "off"],
  });
  const { serve, pub: device, user } = fixture;
  try {
    // Where the default template would publish: the user id is random, so no other test
    // publishes there.
    const errors = await collect(device, `${user}/errors`);
    await publish(device, serve.feedTopic(user, "dev1", "temp"), "1");
    await waitFor("the reject committed", () => serve.metrics.rejected.total() === 1);
    // serve hands feedback to its socket before the reject counters move, so a marker
    // published now on serve's own connection, to the same topic at the same QoS, comes
    // after any feedback (MQTT 5 §4.6: one connection, one topic, in order).
    const marker = JSON.stringify({ marker: true });
    await publish(serve.source.client, `${user}/errors`, marker, { qos: 0 });
    await waitFor("the marker", () => errors.length >= 1);
    assert.deepEqual(errors, [{ marker: true }]);
    assert.match(
      serve.metrics.registry.render(),
      /feedline_rejects_total\{reason="unknown_feed"\} 1\n/,
    );
  } finally {
    await fixture.close();
  }
});

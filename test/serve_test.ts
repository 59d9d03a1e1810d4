import assert from "node:assert/strict";
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

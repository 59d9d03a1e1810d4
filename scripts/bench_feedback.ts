/**
 * Does feedback on the errors topic slow ingest down? Publishes 20,000 bad messages
 * (QoS 0, 100 users) and times until serve has processed them, with feedback off and on,
 * twice each. Numbers are in docs/operations.md.
 *
 *   TEST_DATABASE_URL=postgres://root@127.0.0.1:5432/postgres \
 *   TEST_MQTT_URL=mqtt://127.0.0.1:1883 deno run -A scripts/bench_feedback.ts
 */
import { createTestBroker } from "../test/support/broker.ts";
import { createTestDatabase } from "../test/support/db.ts";
import { connectClient, endClient, startTestServe, waitFor } from "../test/support/serve.ts";
const N = 20000;
for (const mode of ["off", "on", "off", "on"]) {
  const db = await createTestDatabase();
  const broker = await createTestBroker();
  const prefix = `b${crypto.randomUUID().slice(0, 8)}`;
  const serve = await startTestServe({
    databaseUrl: db.url,
    mqttUrl: broker.url,
    protocolVersion: broker.protocolVersion,
    prefix,
    args: [
      "--qos",
      "0",
      "--errors-topic",
      mode === "off" ? "off" : `${prefix}/{user_id}/errors`,
      "--errors-per-minute",
      "1000000",
      "--batch-interval-ms",
      "100",
    ],
  });
  const pub = await connectClient(broker.url, broker.protocolVersion);
  const users = Array.from({ length: 100 }, () => crypto.randomUUID());
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    pub.publish(`${prefix}/${users[i % 100]}/dev/feeds/t`, "{bad", { qos: 0 });
  }
  await waitFor(
    "processed",
    () => serve.metrics.processed.total() + serve.metrics.dropped.total() >= N,
    60000,
  );
  const ms = performance.now() - t0;
  const fb = serve.metrics.registry.render().match(
    /feedline_error_feedback_total\{outcome="published"\} (\d+)/,
  )?.[1];
  console.log(
    `feedback ${mode}: ${N} rejects in ${ms.toFixed(0)} ms = ${
      (N / ms * 1000).toFixed(0)
    }/s, dropped ${serve.metrics.dropped.total()}, feedback published ${fb}`,
  );
  await endClient(pub);
  await serve.stop();
  await broker.close();
  await db.close();
}

/**
 * Shutdown keeps its word: `--shutdown-timeout-ms` bounds the exit of a real `serve`
 * process also while its database is gone, and every message it received is in exactly
 * one term of its final accounting line; a part that does not close in time is named.
 */
import assert from "node:assert/strict";
import mqtt from "mqtt";
import { Closers } from "../src/closers.ts";
import { createLogger } from "../src/log.ts";
import { auditedProcess, openBooks } from "./support/audit.ts";
import { createTestBroker } from "./support/broker.ts";
import { createTestDatabase } from "./support/db.ts";
import { parsePrometheusText } from "./support/prometheus.ts";
import {
  connectClient,
  endClient,
  prefixedTopicArgs,
  publish,
  spawnServe,
  uniquePrefix,
  waitFor,
} from "./support/serve.ts";
import { startTcpProxy } from "./support/tcp_proxy.ts";

const BASE_TS = 1_767_225_600_000;
const SHUTDOWN_TIMEOUT_MS = 3000;

Deno.test("with the database cut, SIGTERM exits near --shutdown-timeout-ms and the final accounting balances", async () => {
  const db = await createTestDatabase();
  const broker = await createTestBroker();
  const dbUrl = new URL(db.url);
  const proxy = await startTcpProxy({ hostname: dbUrl.hostname, port: Number(dbUrl.port) });
  dbUrl.hostname = "127.0.0.1";
  dbUrl.port = String(proxy.port);
  const prefix = uniquePrefix();
  const clientId = `feedline-shutdown-${prefix}`;
  const user = crypto.randomUUID();
  await db.sql`insert into users (id) values (${user})`;
  await db.sql`insert into feeds (user_id, key) values (${user}, 'temp')`;
  const topic = `${prefix}/${user}/d1/feeds/temp`;
  const books = await openBooks(db.url);
  const serve = spawnServe([
    "--http",
    "127.0.0.1:0",
    "--client-id",
    clientId,
    "--mqtt-protocol",
    broker.protocolVersion === 5 ? "5" : "3.1.1",
    "--session-expiry",
    "60",
    "--batch-interval-ms",
    "50",
    "--shutdown-timeout-ms",
    String(SHUTDOWN_TIMEOUT_MS),
    "--db-check-interval-ms",
    "200",
    ...prefixedTopicArgs(prefix),
  ], { DATABASE_URL: dbUrl.href, MQTT_URL: broker.url });
  const pub = await connectClient(broker.url, broker.protocolVersion);
  let resumed: mqtt.MqttClient | null = null;
  const reading = (i: number) => JSON.stringify({ value: i, ts: BASE_TS + i });
  try {
    await serve.waitForLog("subscribed");
    const port = new URL(String((await serve.waitForLog("http listening")).metrics)).port;
    const metric = async (name: string, labels?: Record<string, string>) =>
      parsePrometheusText(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())
        .value(name, labels);

    for (let i = 0; i < 10; i++) await publish(pub, topic, reading(i));
    await waitFor(
      "the first 10 readings",
      async () => (await metric("feedline_readings_stored_total")) === 10,
    );

    proxy.cut();
    const qos0 = 300;
    const qos1 = 40;
    for (let i = 0; i < qos0; i++) await publish(pub, topic, reading(100 + i), { qos: 0 });
    await Promise.all(
      Array.from({ length: qos1 }, (_, i) => publish(pub, topic, reading(1000 + i))),
    );
    // Every QoS 0 message is in serve's hands, and the broker's in-flight window of QoS 1.
    await waitFor(
      "serve to hold the QoS 0 messages and a window of QoS 1",
      async () => (await metric("feedline_messages_received_total")) >= 10 + qos0 + 20,
    );

    const started = performance.now();
    const code = await serve.signal("SIGTERM");
    const exitMs = performance.now() - started;
    console.log(
      `exit took ${Math.round(exitMs)} ms with --shutdown-timeout-ms ${SHUTDOWN_TIMEOUT_MS}`,
    );
    assert.equal(code, 0);
    assert.ok(
      exitMs < SHUTDOWN_TIMEOUT_MS + 5000,
      `exit took ${Math.round(exitMs)} ms (timeout ${SHUTDOWN_TIMEOUT_MS} ms)`,
    );

    const stopped = serve.logs.find((l) => l.msg === "stopped");
    assert.ok(stopped, "serve logs its accounting when it stops");
    const n = (k: string) => stopped[k] as number;
    assert.equal(n("queued"), 0, "nothing left queued");
    assert.equal(n("inFlight"), 0, "nothing left in flight");
    assert.equal(n("stored"), 10);
    assert.equal(
      n("received"),
      n("stored") + n("rejected") + n("skipped") + n("dropped") + n("discarded"),
      `the final accounting balances: ${JSON.stringify(stopped)}`,
    );
    const dropped = stopped.droppedByReason as Record<string, number>;
    const discarded = stopped.discardedByReason as Record<string, number>;
    assert.equal(dropped.shutdown, qos0, "every unstored QoS 0 message is dropped{shutdown}");
    assert.equal(dropped.queue_full, 0);
    assert.equal(
      discarded.shutdown,
      n("received") - 10 - qos0,
      "every received, unstored QoS 1 message is discarded{shutdown}",
    );
    assert.ok(discarded.shutdown > 0);

    // The QoS 1 messages were left with the broker: serve's session gets all of them again.
    const redelivered = new Set<number>();
    // The listener goes on before the connection: the backlog can arrive before `connect`.
    resumed = mqtt.connect(broker.url, {
      protocolVersion: broker.protocolVersion,
      clientId,
      clean: false,
      reconnectPeriod: 0,
      properties: broker.protocolVersion === 5 ? { sessionExpiryInterval: 1 } : undefined,
    });
    resumed.on("message", (_t, payload) => redelivered.add(JSON.parse(String(payload)).value));
    await waitFor("the QoS 1 messages to come back", () => redelivered.size === qos1);
    assert.deepEqual(
      [...redelivered].sort((a, b) => a - b),
      Array.from({ length: qos1 }, (_, i) => 1000 + i),
    );
    // Read directly, not through the cut proxy. The batch abandoned at the deadline could
    // not commit (its connection was cut), but the audit allows for one that could.
    await books.verify([auditedProcess(serve)]);
  } finally {
    if (resumed) await endClient(resumed, true);
    await endClient(pub, true);
    await serve.signal("SIGKILL");
    await proxy.close();
    await broker.close();
    await db.close();
  }
});

Deno.test("a close that hangs is named in the warning, and the others still close", async () => {
  const lines: Record<string, unknown>[] = [];
  const closers = new Closers(
    createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) }),
    20,
  );
  const closed: string[] = [];
  closers.push("the database pool", () => void closed.push("pool"));
  closers.push("the MQTT connection", () => new Promise<void>(() => {}));
  closers.push("the HTTP server", () => void closed.push("http"));
  await closers.closeAll();
  assert.deepEqual(closed, ["http", "pool"]);
  const warnings = lines.filter((l) => l.level === "warn");
  assert.equal(warnings.length, 1, JSON.stringify(lines));
  assert.equal(warnings[0].msg, "the MQTT connection did not close in time; moving on");
  assert.equal(warnings[0].component, "the MQTT connection");
  assert.equal(warnings[0].timeout_ms, 20);
});

/**
 * Nothing lost: faults injected for real (a cut database connection, a broker restart,
 * full queues, a held transaction) and the guarantees checked afterwards in the
 * database and in the accounting equation.
 */
import assert from "node:assert/strict";
import type { MqttClient } from "mqtt";
import { accountingTerms } from "../src/ingest/accounting.ts";
import { createServeLogger } from "../src/ops/serve_logger.ts";
import { startMosquitto } from "./support/broker.ts";
import { startServeFixture } from "./support/fixture.ts";
import { parsePrometheusText } from "./support/prometheus.ts";
import {
  connectClient,
  endClient,
  HAVE_MOSQUITTO,
  publish,
  type TestServe,
  waitFor,
} from "./support/serve.ts";
import { proxiedUrl, type TcpProxy } from "./support/tcp_proxy.ts";

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
  const a = accountingTerms(serve.metrics, serve.pipeline.queued, serve.pipeline.inFlight);
  assert.ok(a.balanced, `accounting does not balance: ${JSON.stringify(a)}`);
}

async function readyz(port: number): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`);
  return { status: res.status, body: await res.json() };
}

Deno.test("while the database is unreachable serve holds the messages, stops taking more and writes them all when it returns", async () => {
  let proxy!: TcpProxy;
  const f = await startServeFixture({
    // serve reaches the database through a proxy the test can cut.
    databaseUrl: (db) => proxiedUrl(db.url, (p) => proxy = p),
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
  const topic = f.serve.feedTopic(f.user, "d1", "temp");
  try {
    await publishMany(f.pub, topic, 0, 10);
    await waitFor("the first 10 readings", async () => (await f.storedCount()) === 10);

    proxy.cut();
    const publishing = publishMany(f.pub, topic, 10, 200);
    await waitFor("readyz to report the database down", async () => {
      const r = await readyz(f.serve.httpPort!);
      return r.status === 503 && r.body.database === false && r.body.broker === true;
    });
    // Every message is at the broker, which offered serve what its window allows.
    await publishing;
    // Back-pressure: at most a queue and a batch are held; the broker keeps the rest.
    const held = f.serve.metrics.received.total() - 10;
    assert.ok(held <= 20 + 10, `serve took ${held} messages while the database was down`);
    assert.equal(f.serve.metrics.dropped.total(), 0);
    assert.equal(await f.storedCount(), 10);

    proxy.restore();
    await waitFor("all 200 readings", async () => (await f.storedCount()) === 200, 30_000);
    await waitFor(
      "readyz to report ready again",
      async () => (await readyz(f.serve.httpPort!)).status === 200,
      15_000,
    );
    await waitFor(
      "the queues to empty",
      () => f.serve.pipeline.queued + f.serve.pipeline.inFlight === 0,
    );
    assertBalanced(f.serve);
  } finally {
    await f.close();
    await proxy.close();
  }
});

Deno.test({
  name: "after a broker restart serve resubscribes and loses nothing published meanwhile",
  ignore: !HAVE_MOSQUITTO,
  async fn() {
    const mosquitto = await startMosquitto({ persistence: true });
    const f = await startServeFixture({
      broker: { url: mosquitto.url, protocolVersion: 5 },
      args: ["--batch-interval-ms", "50"],
    });
    const topic = f.serve.feedTopic(f.user, "d1", "temp");
    let pub: MqttClient | null = null;
    try {
      await publishMany(f.pub, topic, 0, 50);
      await waitFor("the first 50 readings", async () => (await f.storedCount()) === 50);

      await mosquitto.stop();
      await waitFor("serve to notice", () => !f.serve.source.connected);
      await mosquitto.restart();
      // Published before serve is back: the broker queues them in serve's session.
      pub = await connectClient(mosquitto.url, 5);
      await publishMany(pub, topic, 50, 100);
      await waitFor("all 100 readings", async () => (await f.storedCount()) === 100, 30_000);
      await waitFor("serve to be subscribed again", () => f.serve.source.subscribed);
      assertBalanced(f.serve);
    } finally {
      if (pub) await endClient(pub, true);
      await f.close();
      await mosquitto.close();
    }
  },
});

Deno.test("full queues hold QoS 1 messages back at the broker and drop nothing", async () => {
  const f = await startServeFixture({
    args: ["--batch-interval-ms", "20", "--batch-size", "5", "--queue-size", "10"],
  });
  const blocker = await f.db.sql.reserve();
  try {
    await blocker`begin`;
    await blocker`lock table feed_values in exclusive mode`;
    const publishing = publishMany(f.pub, f.serve.feedTopic(f.user, "d1", "temp"), 0, 200);
    await waitFor("the queue to fill", () => f.serve.pipeline.dataQueued >= 10);
    // Every message is at the broker, which offered serve what its window allows.
    await publishing;
    assert.ok(f.serve.pipeline.dataQueued <= 10);
    assert.ok(f.serve.metrics.received.total() <= 15, `took ${f.serve.metrics.received.total()}`);
    await blocker`rollback`;
    await waitFor("all 200 readings", async () => (await f.storedCount()) === 200, 30_000);
    assert.equal(f.serve.metrics.dropped.total(), 0);
    assertBalanced(f.serve);
  } finally {
    blocker.release();
    await f.close();
  }
});

Deno.test("--qos0-when-full drop: QoS 0 messages that find the queue full are dropped and counted, never silently", async () => {
  const f = await startServeFixture({
    args: [
      "--qos",
      "0",
      "--qos0-when-full",
      "drop",
      "--batch-interval-ms",
      "20",
      "--batch-size",
      "5",
      "--queue-size",
      "10",
    ],
  });
  const blocker = await f.db.sql.reserve();
  try {
    await blocker`begin`;
    await blocker`lock table feed_values in exclusive mode`;
    await publishMany(f.pub, f.serve.feedTopic(f.user, "d1", "temp"), 0, 200, 0);
    await waitFor("every message to be received", () => f.serve.metrics.received.total() === 200);
    await blocker`rollback`;
    await waitFor(
      "the queues to empty",
      () => f.serve.pipeline.queued + f.serve.pipeline.inFlight === 0,
    );
    const dropped = f.serve.metrics.dropped.get({ reason: "queue_full" });
    assert.ok(dropped > 0, "some messages must have found the queue full");
    assert.equal(await f.storedCount() + dropped, 200);
    assertBalanced(f.serve);
  } finally {
    blocker.release();
    await f.close();
  }
});

Deno.test("a batch held up by a table lock is a stalled writer: /readyz 503 with its age, the gauge, one warning; ready again after", async () => {
  const logs: Record<string, unknown>[] = [];
  const f = await startServeFixture({
    args: [
      "--batch-interval-ms",
      "50",
      "--stall-warn-ms",
      "400",
      "--db-check-interval-ms",
      "100",
      "--http",
      "127.0.0.1:0",
    ],
    log: (config) =>
      createServeLogger({ ...config, logFormat: "json" }, (line) => logs.push(JSON.parse(line))),
  });
  const port = f.serve.httpPort!;
  const batchAge = async () =>
    parsePrometheusText(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())
      .value("feedline_batch_age_seconds");
  const stallWarnings = () => logs.filter((l) => String(l.msg).startsWith("writer stalled"));
  const blocker = await f.db.sql.reserve();
  try {
    await waitFor("ready at start", async () => (await readyz(port)).status === 200);
    await blocker`begin`;
    await blocker`lock table feed_values in access exclusive mode`;
    await publishMany(f.pub, f.serve.feedTopic(f.user, "d1", "temp"), 0, 5);
    await waitFor("the stall to show on /readyz", async () => {
      const r = await readyz(port);
      return r.status === 503 && (r.body.writer as { stalled: boolean }).stalled;
    });
    // Held a while longer: the age grows, and the warning is still a single line (the
    // age is wall time: this waits for it, 1.5 s, on purpose).
    await waitFor(
      "the batch to be 1.5 s old",
      async () =>
        ((await readyz(port)).body.writer as { batch_age_ms: number }).batch_age_ms >= 1500,
    );
    const r = await readyz(port);
    assert.equal(r.status, 503);
    assert.equal(r.body.broker, true);
    assert.equal(r.body.database, true, "a held batch is not a database outage");
    const writer = r.body.writer as { stalled: boolean; batch_age_ms: number };
    assert.equal(writer.stalled, true);
    assert.ok(writer.batch_age_ms >= 1500, `batch_age_ms ${writer.batch_age_ms}`);
    assert.ok((await batchAge()) >= 1.5, "feedline_batch_age_seconds shows the stall");
    assert.equal(stallWarnings().length, 1, "one warning per stall");
    assert.equal(stallWarnings()[0].level, "warn");
    assert.equal(f.serve.metrics.stored.total(), 0, "nothing committed while the lock is held");

    await blocker`rollback`;
    await waitFor("the readings to be stored", async () => (await f.storedCount()) === 5);
    await waitFor("ready again", async () => (await readyz(port)).status === 200);
    assert.deepEqual((await readyz(port)).body.writer, { stalled: false, batch_age_ms: 0 });
    assert.equal(await batchAge(), 0);
    await waitFor(
      "the all-clear in the log",
      () => logs.some((l) => l.msg === "writer moving again: the stalled batch is done"),
    );
    assert.equal(stallWarnings().length, 1);
    assertBalanced(f.serve);
  } finally {
    blocker.release();
    await f.close();
  }
});

import assert from "node:assert/strict";
import { createLogger } from "../src/log.ts";
import { startServeFixture } from "./support/fixture.ts";
import { parsePrometheusText } from "./support/prometheus.ts";
import { publish, waitFor } from "./support/serve.ts";
import { proxiedUrl, startTcpProxy, type TcpProxy } from "./support/tcp_proxy.ts";

async function scrape(port: number) {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return parsePrometheusText(await res.text());
}

/** The probe's warning when `select 1` stops answering (src/ops/readiness.ts). */
const PROBE_DOWN = "database unreachable: not ready until it answers";

async function readyz(port: number): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`);
  return { status: res.status, body: await res.json() };
}

/**
 * Every served metric is in docs/operations.md, every name there is served, and every
 * metric the Grafana dashboard queries is served.
 */
async function assertMetricsDocumented(families: [string, string][]): Promise<void> {
  const served = new Map(families);
  const doc = await Deno.readTextFile(new URL("../docs/operations.md", import.meta.url));
  const documented = new Set([...doc.matchAll(/^\| `(feedline_[a-z_]+)`/gm)].map((m) => m[1]));
  for (const name of served.keys()) assert.ok(documented.has(name), `${name} is not documented`);
  for (const name of documented) assert.ok(served.has(name), `${name} is documented, not served`);
  const dashboard = JSON.parse(
    await Deno.readTextFile(new URL("../docs/grafana-dashboard.json", import.meta.url)),
  );
  const queried = new Set<string>();
  for (const panel of dashboard.panels) {
    for (const target of panel.targets ?? []) {
      for (const [name] of String(target.expr).matchAll(/feedline_[a-z_]+/g)) queried.add(name);
    }
  }
  assert.ok(queried.size >= 15, `the dashboard queries only ${queried.size} metrics`);
  for (const name of queried) {
    const base = name.replace(/_(bucket|sum|count)$/, "");
    assert.ok(
      served.has(name) || served.get(base) === "histogram",
      `the dashboard queries ${name}, which /metrics does not serve`,
    );
  }
}

Deno.test("/metrics is valid Prometheus text and its counters move by what was published", async () => {
  const fixture = await startServeFixture({
    args: ["--batch-interval-ms", "50", "--http", "127.0.0.1:0", "--errors-topic", "off"],
  });
  const { serve, pub, user } = fixture;
  try {
    const port = serve.httpPort!;
    const before = await scrape(port);
    for (const name of ["feedline_broker_up", "feedline_database_up"]) {
      assert.equal(before.value(name), 1, name);
    }
    const good = 20;
    const bad = 5;
    for (let i = 0; i < good; i++) {
      await publish(pub, serve.feedTopic(user, "dev1", "temp"), String(20 + i / 10));
    }
    for (let i = 0; i < bad; i++) {
      await publish(pub, serve.feedTopic(user, "dev1", "temp"), "{not json");
    }
    await waitFor(
      "all messages processed",
      () => serve.metrics.processed.total() === good + bad,
    );
    const after = await scrape(port);
    const delta = (name: string, labels?: Record<string, string>) =>
      after.value(name, labels) - before.value(name, labels);
    assert.equal(delta("feedline_messages_received_total"), good + bad);
    assert.equal(delta("feedline_messages_processed_total"), good + bad);
    assert.equal(delta("feedline_readings_stored_total"), good);
    assert.equal(delta("feedline_rejects_total", { reason: "bad_payload" }), bad);
    assert.equal(delta("feedline_messages_dropped_total", { reason: "queue_full" }), 0);
    assert.equal(delta("feedline_batch_size_count"), delta("feedline_batches_total"));
    assert.ok(delta("feedline_batches_total") >= 1);
    assert.equal(delta("feedline_ingest_lag_seconds_count"), good + bad);
    assert.ok(after.value("feedline_last_commit_timestamp_seconds") > 0);
    assert.ok(after.value("feedline_process_resident_memory_bytes") > 0);
    for (const name of ["feedline_queue_depth_data", "feedline_unacked_messages"]) {
      assert.equal(after.types.get(name), "gauge", name);
    }
    assert.equal(await fixture.storedCount(), good);
    await assertMetricsDocumented([...after.types.entries()]);
  } finally {
    await fixture.close();
  }
});

Deno.test("/readyz turns 503 naming the database or broker that went away, and 200 when it returns", async () => {
  const proxies: Record<string, TcpProxy> = {};
  /** `url` through a new proxy named `name`, for serve. */
  const proxied = async (name: string, url: string) => {
    const proxiedUrl = new URL(url);
    const proxy = await startTcpProxy({
      hostname: proxiedUrl.hostname,
      port: Number(proxiedUrl.port),
    });
    proxies[name] = proxy;
    proxiedUrl.port = String(proxy.port);
    return proxiedUrl.href;
  };
  const fixture = await startServeFixture({
    databaseUrl: (db) => proxied("database", db.url),
    mqttUrl: (broker) => proxied("broker", broker.url),
    args: ["--http", "127.0.0.1:0", "--db-check-interval-ms", "100"],
  }).catch(async (error) => {
    for (const proxy of Object.values(proxies)) await proxy.close();
    throw error;
  });
  const { serve } = fixture;
  const { database: dbProxy, broker: brokerProxy } = proxies;
  try {
    const port = serve.httpPort!;
    assert.equal(
      (await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.json())).status,
      "ok",
    );
    await waitFor("ready at start", async () => (await readyz(port)).status === 200);

    dbProxy.cut();
    await waitFor(
      "503 while the database is away",
      async () => (await readyz(port)).status === 503,
    );
    assert.deepEqual(notHoldingBack((await readyz(port)).body), {
      status: "not ready",
      broker: true,
      database: false,

      writer: { stalled: false, batch_age_ms: 0 },
    });
    assert.equal((await scrape(port)).value("feedline_database_up"), 0);
    dbProxy.restore();
    await waitFor(
      "ready again with the database back",
      async () => (await readyz(port)).status === 200,
    );

    brokerProxy.cut();
    await waitFor("503 while the broker is away", async () => (await readyz(port)).status === 503);
    assert.deepEqual(notHoldingBack((await readyz(port)).body), {
      status: "not ready",
      broker: false,
      database: true,

      writer: { stalled: false, batch_age_ms: 0 },
    });
    assert.equal((await scrape(port)).value("feedline_broker_connected"), 0);
    brokerProxy.restore();
    await waitFor(
      "ready again with the broker back",
      async () => (await readyz(port)).status === 200,
      20_000,
    );
    // /healthz only says the process is alive: it was 200 all along.
    assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
  } finally {
    dbProxy.restore();
    brokerProxy.restore();
    await fixture.close();
    await dbProxy.close();
    await brokerProxy.close();
  }
});

Deno.test("the status API reports feeds with recent values, rejects and devices from the database", async () => {
  const fixture = await startServeFixture({
    device: "dev1",
    args: ["--batch-interval-ms", "50", "--http", "127.0.0.1:0"],
  });
  const { serve, pub, user } = fixture;
  try {
    const base = `http://127.0.0.1:${serve.httpPort}`;
    for (const v of ["1.5", "2.5", "3.5"]) {
      await publish(pub, serve.feedTopic(user, "dev1", "temp"), v);
    }
    await publish(pub, serve.feedTopic(user, "dev1", "nosuchfeed"), "7");
    await publish(pub, serve.statusTopic(user, "dev1"), "online");
    await waitFor("five messages processed", () => serve.metrics.processed.total() === 5);

    const feeds = await (await fetch(`${base}/api/feeds`)).json();
    const temp = feeds.find((f: { key: string }) => f.key === "temp");
    assert.equal(temp.last_value, "3.5");
    assert.equal(temp.device, "dev1");
    assert.deepEqual(temp.points.map((p: [number, number]) => p[1]), [1.5, 2.5, 3.5]);

    const rejects = await (await fetch(`${base}/api/rejects`)).json();
    assert.equal(rejects[0].reason, "unknown_feed");
    assert.equal(rejects[0].topic, serve.feedTopic(user, "dev1", "nosuchfeed"));

    const devices = await (await fetch(`${base}/api/devices`)).json();
    assert.equal(devices.counts.online, 1);
    assert.equal(devices.recent[0].code, "dev1");

    const live = await (await fetch(`${base}/api/live`)).json();
    assert.equal(live.totals.stored, 3);
    assert.equal(live.rejected_by_reason.unknown_feed, 1);
    assert.ok(live.history.length >= 1);

    const page = await fetch(`${base}/`);
    assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
    assert.match(await page.text(), /<title>feedline status<\/title>/);
  } finally {
    await fixture.close();
  }
});

Deno.test("/readyz is 200 as soon as a batch commits after the database returns, not at the next probe", async () => {
  let proxy!: TcpProxy;
  const lines: Record<string, unknown>[] = [];
  const fixture = await startServeFixture({
    databaseUrl: (db) => proxiedUrl(db.url, (p) => proxy = p),
    // A probe every 2 s: the commit below comes well before the next one.
    args: ["--http", "127.0.0.1:0", "--db-check-interval-ms", "2000", "--batch-interval-ms", "20"],
    log: createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) }),
  }).catch(async (error) => {
    await proxy?.close();
    throw error;
  });
  const { serve, pub, user } = fixture;
  const logged = (msg: string) => () => lines.some((l) => l.msg === msg);
  try {
    const port = serve.httpPort!;
    await waitFor("ready at start", async () => (await readyz(port)).status === 200);
    proxy.cut();
    await waitFor("the probe to find the database gone", logged(PROBE_DOWN), 5_000);
    const committed = new Promise<void>((resolve) => serve.pipeline.onCommit(() => resolve()));
    await publish(pub, serve.feedTopic(user, "d1", "temp"), "21.5");
    await waitFor("the batch to fail", logged("batch failed; keeping it and retrying"));
    proxy.restore();
    await committed;
    // The probe has not run since it failed (its next run is ~2 s away); the commit
    // alone proves the database is back.
    const r = await readyz(port);
    assert.deepEqual(notHoldingBack(r.body), {
      status: "ready",
      broker: true,
      database: true,
      writer: { stalled: false, batch_age_ms: 0 },
    });
    assert.equal(r.status, 200);
    assert.equal((await scrape(port)).value("feedline_database_up"), 1);
    assert.equal(lines.filter((l) => l.msg === "database reachable again").length, 1);
  } finally {
    proxy.restore();
    await fixture.close();
    await proxy.close();
  }
});

/** A /readyz body without its queue part, which must say serve is not holding back. */
function notHoldingBack(body: Record<string, unknown>): Record<string, unknown> {
  const { queue, ...rest } = body as { queue: { holding_back: boolean } };
  assert.equal(queue.holding_back, false, "nothing holds the queues here");
  return rest;
}

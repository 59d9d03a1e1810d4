import assert from "node:assert/strict";
import { createServeLogger } from "../src/ops/serve_logger.ts";
import { startServeFixture } from "./support/fixture.ts";
import { publish, waitFor } from "./support/serve.ts";
import { startTcpProxy, type TcpProxy } from "./support/tcp_proxy.ts";

const MQTT_URL_PASSWORD = "urlPw-7f3a9c";
const MQTT_URL_TOKEN = "tok-91b2c4d";
const MQTT_ENV_PASSWORD = "envPw-22c9e1";
const DB_PASSWORD = "dbPw-5e1d0b";

Deno.test("serve logs JSON lines with no secret from its configuration, and floods as counts", async () => {
  let dbProxy: TcpProxy | null = null;
  const lines: string[] = [];
  const fixture = await startServeFixture({
    // Trust authentication (CI's PostgreSQL, PGlite) and an anonymous broker accept the
    // credentials without checking them: what matters is what reaches the log.
    databaseUrl: async (db) => {
      const dbUrl = new URL(db.url);
      dbProxy = await startTcpProxy({ hostname: dbUrl.hostname, port: Number(dbUrl.port) });
      dbUrl.port = String(dbProxy.port);
      dbUrl.password = DB_PASSWORD;
      return dbUrl.href;
    },
    mqttUrl: (broker) => {
      const mqttUrl = new URL(broker.url);
      mqttUrl.username = "feedline";
      mqttUrl.password = MQTT_URL_PASSWORD;
      mqttUrl.search = `?token=${MQTT_URL_TOKEN}`;
      return mqttUrl.href;
    },
    env: { MQTT_PASSWORD: MQTT_ENV_PASSWORD, MQTT_USERNAME: "feedline" },
    args: [
      "--log-format",
      "json",
      "--log-level",
      "debug",
      "--batch-interval-ms",
      "50",
      "--db-check-interval-ms",
      "100",
      "--log-repeat-interval-ms",
      "60000",
      "--http",
      "127.0.0.1:0",
    ],
    log: (config) => createServeLogger(config, (line) => lines.push(line)),
  }).catch(async (error) => {
    await dbProxy?.close();
    throw error;
  });
  const { serve, pub, user } = fixture;
  const proxy: TcpProxy = dbProxy!;
  try {
    const bad = 40;
    for (let i = 0; i < bad; i++) {
      await publish(pub, serve.feedTopic(user, "dev1", "temp"), `{bad ${i}`);
    }
    await waitFor("the bad messages processed", () => serve.metrics.processed.total() === bad);

    // The database goes away while a reading waits: error messages of the driver reach
    // the log, and must not carry the URL's password either.
    proxy.cut();
    await waitFor(
      "database reported down",
      () => serve.metrics.registry.render().includes("feedline_database_up 0"),
    );
    await publish(pub, serve.feedTopic(user, "dev1", "temp"), "21.5", { qos: 0 });
    await waitFor("a failed batch", () => serve.metrics.batchErrors.total() > 0);
    proxy.restore();
    await waitFor("the reading stored", () => serve.metrics.stored.total() === 1, 20_000);

    await serve.stop();

    const records = lines.map((line) => {
      const record = JSON.parse(line);
      assert.equal(typeof record.time, "string", line);
      assert.ok(["debug", "info", "warn", "error"].includes(record.level), line);
      assert.equal(typeof record.msg, "string", line);
      return record;
    });
    const all = lines.join("\n");
    for (const secret of [MQTT_URL_PASSWORD, MQTT_URL_TOKEN, MQTT_ENV_PASSWORD, DB_PASSWORD]) {
      assert.ok(!all.includes(secret), `a log line contains the secret ${secret}`);
    }
    // The URLs are logged, masked.
    assert.ok(records.some((r) => r.msg === "connected to broker" && /:\*\*\*@/.test(r.url)));
    assert.ok(records.some((r) => r.msg === "database ready" && /:\*\*\*@/.test(r.where)));
    assert.ok(records.some((r) => r.msg === "database unreachable: not ready until it answers"));
    assert.ok(records.some((r) => r.msg === "batch failed; keeping it and retrying"));

    // Forty rejects, one or two lines: the first at once, the rest counted at the end.
    const rejected = records.filter((r) => r.msg === "messages rejected");
    assert.ok(rejected.length >= 1 && rejected.length <= 2, `${rejected.length} lines`);
    assert.equal(rejected.reduce((n, r) => n + r.count, 0), bad);
    assert.ok(rejected.every((r) => r.level === "warn" && r.reason === "bad_payload"));
    // The summary written at stop comes before "stopped", serve's last word.
    const stopped = records.findIndex((r) => r.msg === "stopped");
    assert.ok(stopped > records.findLastIndex((r) => r.msg === "messages rejected"), all);
  } finally {
    proxy.restore();
    await fixture.close();
    await proxy.close();
  }
});

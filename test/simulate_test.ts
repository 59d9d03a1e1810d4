import assert from "node:assert/strict";
import postgres from "postgres";
import { parseServeArgs, startServe } from "../commands/serve.ts";
import { parseSimulateArgs } from "../src/cli/simulate_options.ts";
import { startSimulation } from "../src/sim/simulation.ts";
import { resolveTargets, type SimulateTargets } from "../src/sim/targets.ts";
import { readEndpoints, writeEndpoints } from "../src/embedded/endpoints.ts";
import { FeedlineError } from "../src/errors.ts";
import { silentLogger } from "../src/log.ts";
import { registerFleet } from "../src/sim/register.ts";
import { BAD_REASONS } from "../src/sim/traffic.ts";
import { existsSync } from "node:fs";
import { tapStopped, verifyEmbeddedBooks } from "./support/audit.ts";
import { createTestBroker, startMosquitto, type TestBroker } from "./support/broker.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import {
  connectClient,
  endClient,
  prefixedTopicArgs,
  startTestServe,
  type TestServe,
  uniquePrefix,
  waitFor,
} from "./support/serve.ts";

/** Starts `simulate` in-process on `prefix`'s topics against `broker`. */
function simulate(
  broker: TestBroker,
  prefix: string,
  args: string[],
  targets: Partial<SimulateTargets> = {},
) {
  const config = parseSimulateArgs([
    ...prefixedTopicArgs(prefix),
    "--client-id-prefix",
    `sim-${prefix}`,
    ...args,
  ], {});
  return startSimulation(config, {
    mqttUrl: broker.url,
    protocolVersion: broker.protocolVersion,
    databaseUrl: null,
    register: false,
    foundServe: false,
    autoRegister: null,
    ...targets,
  });
}

/** Runs `fn` with a fresh database, a broker and serve (batches every 100 ms) on its own prefix. */
async function withServe(
  fn: (ctx: { db: TestDatabase; broker: TestBroker; serve: TestServe }) => Promise<void>,
): Promise<void> {
  const db = await createTestDatabase();
  const broker = await createTestBroker();
  const serve = await startTestServe({
    databaseUrl: db.url,
    mqttUrl: broker.url,
    protocolVersion: broker.protocolVersion,
    args: ["--batch-interval-ms", "100"],
  });
  try {
    await fn({ db, broker, serve });
  } finally {
    await serve.stop();
    await broker.close();
    await db.close();
  }
}

/** Subscribes to everything under `prefix` and collects what arrives. */
async function capture(broker: TestBroker, prefix: string) {
  const client = await connectClient(broker.url, broker.protocolVersion, {
    clientId: `cap-${prefix}-${crypto.randomUUID().slice(0, 6)}`,
  });
  const messages: { topic: string; payload: string }[] = [];
  client.on("message", (topic, payload) => messages.push({ topic, payload: payload.toString() }));
  await client.subscribeAsync(`${prefix}/#`, { qos: 1 });
  return { client, messages };
}

/** Reads in one transaction, so several counts see the same snapshot. */
function read<T>(sql: postgres.Sql, fn: (tx: postgres.TransactionSql) => Promise<T>): Promise<T> {
  return sql.begin(fn) as Promise<T>;
}

/** Rows in `table` (a fixed name from this file). */
function rowCount(sql: postgres.Sql, table: string): Promise<number> {
  return read(
    sql,
    async (tx) => (await tx<{ n: number }[]>`select count(*)::int as n from ${tx(table)}`)[0].n,
  );
}

/** Reject counts by reason. */
function rejectsByReason(sql: postgres.Sql): Promise<Record<string, number>> {
  return read(sql, async (tx) => {
    const rows = await tx<{ reason: string; n: number }[]>`
      select reason, count(*)::int as n from ingest_rejects group by reason`;
    return Object.fromEntries(rows.map((r) => [r.reason, r.n]));
  });
}

/** Feeds registered with thresholds. */
function feedsWithThresholds(sql: postgres.Sql): Promise<number> {
  return read(sql, async (tx) =>
    (await tx<{ n: number }[]>`
      select count(*)::int as n from feeds
      where threshold_min is not null and threshold_max is not null`)[0].n);
}

/** Status history of one device, oldest first. */
function statusEvents(sql: postgres.Sql, userId: string, code: string): Promise<string[]> {
  return read(sql, async (tx) => {
    const rows = await tx<{ status: string }[]>`
      select e.status from device_status_events e join devices d on d.id = e.device_id
      where d.user_id = ${userId} and d.code = ${code} order by e.at, e.id`;
    return rows.map((r) => r.status);
  });
}

Deno.test("a registered fleet's traffic is stored, spikes rejected, status recorded", () =>
  withServe(async ({ db, broker, serve }) => {
    const sim = await simulate(broker, serve.prefix, [
      ...["--users", "2", "--devices", "2", "--feeds", "5", "--count", "120", "--rate", "0"],
      ...["--spike-ratio", "0.1", "--seed", "11"],
    ], { databaseUrl: db.url, register: true });
    const summary = await sim.done;
    assert.equal(summary.messages, 120);
    assert.equal(summary.failed, 0);
    assert.deepEqual(summary.registered, { users: 2, devices: 4, feeds: 20 });
    assert.ok(summary.by_kind.plain > 0 && summary.by_kind.json > 0 && summary.by_kind.bulk > 0);
    assert.ok(summary.by_kind.spike > 0, "a spike ratio of 0.1 makes some spikes");

    await waitFor(
      `${summary.readings} stored readings`,
      async () =>
        await rowCount(db.sql, "feed_values") ===
          summary.readings,
    );
    assert.deepEqual(await rejectsByReason(db.sql), { out_of_range: summary.by_kind.spike });
    assert.equal(
      await feedsWithThresholds(db.sql),
      12, // temperature, humidity and battery of each of the 4 devices
    );
    // Every device said online on connect and offline before its clean disconnect.
    await waitFor(
      "8 status events",
      async () => await rowCount(db.sql, "device_status_events") === 8,
    );
    for (const d of sim.fleet.devices) {
      assert.deepEqual(await statusEvents(db.sql, d.userId, d.code), ["online", "offline"]);
    }
    // Registering again changes nothing.
    assert.deepEqual(await registerFleet(db.sql, sim.fleet), { users: 0, devices: 0, feeds: 0 });
  }));

Deno.test("--threshold-mode alert --max-silence: registered so, spikes are stored and open alerts, nothing is rejected", () =>
  withServe(async ({ db, broker, serve }) => {
    const sim = await simulate(broker, serve.prefix, [
      ...["--users", "1", "--devices", "2", "--feeds", "3", "--count", "60", "--rate", "0"],
      ...["--spike-ratio", "0.3", "--threshold-mode", "alert", "--max-silence", "5m"],
    ], { databaseUrl: db.url, register: true });
    const summary = await sim.done;
    assert.ok(summary.by_kind.spike > 0);
    assert.deepEqual(summary.rejects_intended, {});
    const [settings] = await db.sql`
      select count(*)::int as feeds,
             count(*) filter (where threshold_mode = 'alert'
                                and max_silence = interval '5 minutes')::int as set
      from feeds`;
    assert.deepEqual([settings.feeds, settings.set], [6, 6]);
    await waitFor(
      `${summary.readings} stored readings`,
      async () => await rowCount(db.sql, "feed_values") === summary.readings,
    );
    assert.equal(await rowCount(db.sql, "ingest_rejects"), 0);
    const [{ alerts }] = await db.sql`
      select count(*)::int as alerts from feed_alerts where kind in ('above', 'below')`;
    assert.ok(alerts > 0, "the spikes opened alerts");
  }));

Deno.test("bad traffic ends in ingest_rejects with every intended reason", () =>
  withServe(async ({ db, broker, serve }) => {
    const sim = await simulate(broker, serve.prefix, [
      ...["--users", "1", "--devices", "3", "--count", "30", "--rate", "0", "--bad-ratio", "1"],
    ], { databaseUrl: db.url, register: true });
    const summary = await sim.done;
    assert.equal(summary.failed, 0);
    assert.deepEqual(
      Object.keys(summary.rejects_intended).sort(),
      [...BAD_REASONS].sort(),
    );
    await waitFor(
      "30 rejects",
      async () => await rowCount(db.sql, "ingest_rejects") === 30,
    );
    assert.deepEqual(await rejectsByReason(db.sql), summary.rejects_intended);
    assert.equal(await rowCount(db.sql, "feed_values"), 0);
  }));

Deno.test("a dropped device connection is reported offline by its last will, then online again", () =>
  withServe(async ({ db, broker, serve }) => {
    const sim = await simulate(broker, serve.prefix, [
      ...["--users", "1", "--devices", "2", "--rate", "20", "--duration", "60s"],
    ], { databaseUrl: db.url, register: true });
    const [first, second] = sim.fleet.devices;
    const events = () => statusEvents(db.sql, first.userId, first.code);
    try {
      await waitFor("device online", async () => (await events()).length === 1);
      assert.ok(sim.links!.drop(0, 300), "connection 0 was up");
      // Only the broker can have published this offline: simulate is still running.
      await waitFor("offline by last will", async () => (await events()).length === 2);
      await waitFor("back online", async () => (await events()).length === 3);
      assert.deepEqual(await events(), ["online", "offline", "online"]);
    } finally {
      sim.stop();
    }
    const summary = await sim.done;
    assert.equal(summary.drops, 1);
    assert.equal(summary.lost, 0);
    const secondEvents = () => statusEvents(db.sql, second.userId, second.code);
    await waitFor("offline on exit", async () => (await events()).length === 4);
    await waitFor("the other offline on exit", async () => (await secondEvents()).length === 2);
    assert.deepEqual(await events(), ["online", "offline", "online", "offline"]);
    assert.deepEqual(await secondEvents(), ["online", "offline"]);
  }));

Deno.test("--churn drops connections at random and the broker publishes their wills", async () => {
  const broker = await createTestBroker();
  const prefix = uniquePrefix();
  const { client, messages } = await capture(broker, prefix);
  try {
    const sim = await simulate(broker, prefix, [
      ...["--users", "1", "--devices", "4", "--rate", "20", "--duration", "3s"],
      ...["--churn", "4", "--reconnect-ms", "200"],
    ]);
    const summary = await sim.done;
    assert.ok(summary.drops >= 3, `${summary.drops} drops`);
    assert.ok(summary.connects > 4, "dropped connections came back");
    assert.equal(summary.lost, 0);
    const offline = () =>
      messages.filter((m) => m.topic.endsWith("/status") && m.payload === "offline").length;
    // Wills for the drops, plus the offline each connected device sends on exit.
    await waitFor(`at least ${summary.drops + 1} offline`, () => offline() > summary.drops);
  } finally {
    await endClient(client);
    await broker.close();
  }
});

Deno.test("--rate 200 for 3 s gets about 600 messages to a subscriber", async () => {
  const broker = await createTestBroker();
  const prefix = uniquePrefix();
  const { client, messages } = await capture(broker, prefix);
  try {
    const sim = await simulate(broker, prefix, [
      ...["--users", "1", "--devices", "4", "--rate", "200", "--duration", "3s"],
    ]);
    const summary = await sim.done;
    const data = () => messages.filter((m) => !m.topic.endsWith("/status")).length;
    await waitFor(`${summary.messages} messages delivered`, () => data() >= summary.messages);
    assert.equal(data(), summary.messages);
    assert.ok(
      data() >= 540 && data() <= 660,
      `${data()} messages in 3 s at 200/s (expected 600 ± 10%)`,
    );
  } finally {
    await endClient(client);
    await broker.close();
  }
});

Deno.test("the same seed and start time publish the same messages", async () => {
  const broker = await createTestBroker();
  const prefix = uniquePrefix();
  const run = async (seed: string) => {
    const { client, messages } = await capture(broker, prefix);
    try {
      const sim = await simulate(broker, prefix, [
        ...["--seed", seed, "--start-time", "2026-01-01T00:00:00Z", "--connections", "1"],
        ...["--count", "60", "--rate", "0", "--bad-ratio", "0.2", "--max-payload-bytes", "300"],
      ], {});
      await sim.done;
      // One connection keeps the order: 10 devices online, 60 messages, 10 offline.
      await waitFor("80 messages", () => messages.length === 80);
      return messages;
    } finally {
      await endClient(client);
    }
  };
  try {
    const a = await run("7");
    const b = await run("7");
    assert.deepEqual(a, b);
    assert.ok(a.some((m) => m.payload.includes('"ts":"2026-01-01T00:00:')), "device timestamps");
    assert.notDeepEqual(await run("8"), a);
  } finally {
    await broker.close();
  }
});

Deno.test("simulate finds a running embedded serve and its data lands with no other step", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "feedline-sim-" });
  const tap = tapStopped(silentLogger);
  const serve = await startServe(
    parseServeArgs([
      ...["--data-dir", dataDir, "--embedded-mqtt-port", "0", "--embedded-db-port", "0"],
      ...["--http", "off", "--batch-interval-ms", "100", "--db-pool-size", "2"],
    ], {}),
    tap.log,
  );
  let sql: postgres.Sql | null = null;
  try {
    const config = parseSimulateArgs(
      ["--data-dir", dataDir, "--count", "40", "--rate", "0", "--spike-ratio", "0"],
      {},
    );
    const targets = await resolveTargets(config, readEndpoints);
    assert.equal(targets.protocolVersion, 4, "the embedded broker speaks MQTT 3.1.1");
    assert.equal(targets.register, true);
    const summary = await (await startSimulation(config, targets)).done;
    assert.equal(summary.failed, 0);
    sql = postgres(targets.databaseUrl!, { max: 1, onnotice: () => {} });
    const db = sql;
    await waitFor(
      `${summary.readings} readings`,
      async () => await rowCount(db, "feed_values") === summary.readings,
    );
    assert.ok(
      await feedsWithThresholds(db) > 0,
      "thresholds registered",
    );
    assert.equal(targets.autoRegister, true, "the embedded serve auto-registers");

    // Bad traffic against it: unknown feeds and devices are auto-registered and stored,
    // so the summary does not count them as meant to be rejected, and what it does count
    // is exactly what serve rejected.
    const bad = await (await startSimulation(
      parseSimulateArgs(
        ["--data-dir", dataDir, "--count", "33", "--rate", "0", "--bad-ratio", "1", "--seed", "3"],
        {},
      ),
      targets,
    )).done;
    assert.equal(bad.failed, 0);
    assert.equal(bad.auto_register, true);
    assert.ok((bad.stored_by_auto_register.unknown_feed ?? 0) > 0, "unknown_feed sent");
    assert.ok((bad.stored_by_auto_register.unknown_device ?? 0) > 0, "unknown_device sent");
    assert.equal(bad.rejects_intended.unknown_feed, undefined);
    assert.equal(bad.rejects_intended.unknown_device, undefined);
    const intended = Object.values(bad.rejects_intended).reduce((n, v) => n + (v ?? 0), 0);
    await waitFor(
      `${intended} rejects`,
      async () => await rowCount(db, "ingest_rejects") === intended,
    );
    assert.deepEqual(await rejectsByReason(db), bad.rejects_intended);
    await sql.end();
    sql = null;
    await serve.stop();
    // serve's books against its embedded database (test/support/audit.ts).
    await verifyEmbeddedBooks(dataDir, [{ stopped: tap.stopped() }]);
  } finally {
    await sql?.end();
    await serve.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("resolveTargets() uses a given MQTT_URL with MQTT 5 and registers only when asked", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "feedline-sim-" });
  try {
    const given = await resolveTargets(
      parseSimulateArgs(["--data-dir", dataDir], { MQTT_URL: "mqtt://127.0.0.1:1883" }),
      readEndpoints,
    );
    assert.deepEqual(given, {
      mqttUrl: "mqtt://127.0.0.1:1883",
      protocolVersion: 5,
      databaseUrl: null,
      register: false,
      foundServe: false,
      autoRegister: null,
    });
    await assert.rejects(
      resolveTargets(
        parseSimulateArgs(["--data-dir", dataDir, "--register"], {
          MQTT_URL: "mqtt://127.0.0.1:1883",
        }),
        readEndpoints,
      ),
      (e) =>
        e instanceof FeedlineError && e.code === "CONFIG_INVALID" && /DATABASE_URL/.test(e.message),
    );
    await writeEndpoints(dataDir, {
      mqttUrl: "mqtt://127.0.0.1:41883",
      databaseUrl: "postgres://postgres@127.0.0.1:45433/postgres",
      httpPort: null,
      pid: Deno.pid,
      autoRegister: true,
    });
    const found = await resolveTargets(
      parseSimulateArgs(["--data-dir", dataDir, "--no-register"], {}),
      readEndpoints,
    );
    assert.equal(found.mqttUrl, "mqtt://127.0.0.1:41883");
    assert.equal(found.register, false);
    assert.equal(found.autoRegister, true, "the serve found says it auto-registers");
    const elsewhere = await resolveTargets(
      parseSimulateArgs(["--data-dir", dataDir], { MQTT_URL: "mqtt://127.0.0.1:1883" }),
      readEndpoints,
    );
    assert.equal(elsewhere.autoRegister, null, "a broker given by MQTT_URL: not known");
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("simulate with no broker and no running serve exits 1 with one actionable line", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "feedline-sim-" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../main.ts", import.meta.url).pathname,
        "simulate",
        "--data-dir",
        dataDir,
      ],
      env: { MQTT_URL: "", DATABASE_URL: "" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr).trim();
    assert.equal(out.code, 1);
    assert.equal(stderr.split("\n").length, 1, stderr);
    assert.match(stderr, /no broker to publish to: set MQTT_URL, or start `deno task serve`/);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("simulate fails with BROKER_UNREACHABLE when the broker refuses", async () => {
  const config = parseSimulateArgs(["--count", "1", "--users", "1", "--devices", "1"], {});
  await assert.rejects(
    startSimulation(config, {
      mqttUrl: "mqtt://127.0.0.1:1",
      protocolVersion: 4,
      databaseUrl: null,
      register: false,
      foundServe: false,
      autoRegister: null,
    }),
    (e) => e instanceof FeedlineError && e.code === "BROKER_UNREACHABLE",
  );
});

Deno.test("parseSimulateArgs() names the flag of a bad value", () => {
  const cases: [string[], RegExp][] = [
    [["--connections", "50"], /--connections \(50\) is more than the fleet's 10 devices/],
    [["--formats", "plain,xml"], /--formats must be a comma-separated list/],
    [["--duration", "soon"], /--duration must be a duration/],
    [["--bad-ratio", "2"], /--bad-ratio must be at most 1/],
    [["--start-time", "noon"], /--start-time must be an ISO 8601 time/],
  ];
  for (const [args, message] of cases) {
    assert.throws(
      () => parseSimulateArgs(args, {}),
      (e) => e instanceof FeedlineError && e.code === "CONFIG_INVALID" && message.test(e.message),
      args.join(" "),
    );
  }
  const config = parseSimulateArgs(["--duration", "1.5m", "--formats", "bulk"], {});
  assert.equal(config.duration, 90_000);
  assert.deepEqual(config.formats, ["bulk"]);
  assert.equal(config.connections, 10);
});

Deno.test("--register against a database without the schema says to migrate", async () => {
  const db = await createTestDatabase();
  const broker = await createTestBroker();
  try {
    await db.sql`drop table feed_values, feeds, device_status_events, devices, users cascade`;
    await assert.rejects(
      simulate(broker, uniquePrefix(), ["--count", "1"], { databaseUrl: db.url, register: true }),
      (e) => e instanceof FeedlineError && e.code === "CONFIG_INVALID" && /migrate/.test(e.message),
    );
  } finally {
    await broker.close();
    await db.close();
  }
});

Deno.test({
  name: "a broker that goes away is reported: lost connections and unsettled publishes",
  ignore: !existsSync("/usr/sbin/mosquitto"),
  fn: async () => {
    const mosquitto = await startMosquitto();
    try {
      const broker = {
        url: mosquitto.url,
        protocolVersion: 5 as const,
        close: () => Promise.resolve(),
      };
      const sim = await simulate(broker, uniquePrefix(), [
        ...["--users", "1", "--devices", "3", "--rate", "50", "--duration", "2s"],
        ...["--reconnect-ms", "200", "--drain-timeout-ms", "300"],
      ]);
      await waitFor("some messages acked", () => sim.send.acked > 10);
      await mosquitto.stop();
      const summary = await sim.done;
      assert.equal(summary.lost, 3, "each connection's loss is counted");
      assert.ok(summary.errors > 0, "failed reconnects are counted");
      assert.ok(summary.failed + summary.unsettled > 0, "what the broker never acked is reported");
      assert.equal(summary.acked + summary.failed + summary.unsettled, summary.messages);
    } finally {
      await mosquitto.close();
    }
  },
});

Deno.test("--count 0 --manifest writes the same fleet for the same seed and publishes nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "feedline-sim-" });
  try {
    const manifest = async (name: string, seed: string) => {
      const path = `${dir}/${name}.json`;
      const config = parseSimulateArgs(
        ["--count", "0", "--seed", seed, "--users", "2", "--devices", "3", "--manifest", path],
        {},
      );
      const summary = await (await startSimulation(config, {
        mqttUrl: "mqtt://127.0.0.1:1", // never dialled
        protocolVersion: 5,
        databaseUrl: null,
        register: false,
        foundServe: false,
        autoRegister: null,
      })).done;
      assert.equal(summary.messages, 0);
      assert.equal(summary.connections, 0);
      return JSON.parse(await Deno.readTextFile(path));
    };
    const a = await manifest("a", "5");
    assert.deepEqual(await manifest("b", "5"), a);
    assert.notDeepEqual(await manifest("c", "6"), a);
    assert.equal(a.users.length, 2);
    assert.equal(a.users[0].devices.length, 3);
    assert.deepEqual(Object.keys(a.users[0].devices[0].feeds[0]).sort(), [
      "key",
      "kind",
      "threshold_max",
      "threshold_min",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

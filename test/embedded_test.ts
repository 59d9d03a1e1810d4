import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import mqtt from "mqtt";
import postgres from "postgres";
import { startEmbeddedBroker, startEmbeddedDatabase } from "../src/embedded/services.ts";
import { startMosquitto, withTestBroker } from "./support/broker.ts";
import { withTestDatabase } from "./support/db.ts";

/** Connects and resolves on CONNACK; handlers attached by `setup` see the session backlog. */
function connect(
  url: string,
  opts: mqtt.IClientOptions,
  setup: (client: mqtt.MqttClient) => void = () => {},
): Promise<{ client: mqtt.MqttClient; sessionPresent: boolean }> {
  // No reconnects: a reconnect timer outliving the test trips Deno's sanitizers.
  const client = mqtt.connect(url, { reconnectPeriod: 0, ...opts });
  setup(client);
  return new Promise((resolve, reject) => {
    client.once(
      "connect",
      (connack) => resolve({ client, sessionPresent: connack.sessionPresent }),
    );
    client.once("error", (err) => client.end(true, () => reject(err)));
  });
}

/** The next message; rejects after `ms` so that a lost message fails the test, not hangs it. */
function nextMessage(
  client: mqtt.MqttClient,
  ms = 5_000,
): Promise<{ topic: string; payload: string; qos: number }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message within ${ms} ms`)), ms);
    client.once("message", (topic, payload, packet) => {
      clearTimeout(timer);
      resolve({ topic, payload: payload.toString(), qos: packet.qos });
    });
  });
}

/** Holds a loopback port so that a service asked to use it finds it taken. */
function occupyPort(): Promise<Server> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

function release(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

Deno.test("the embedded broker relays a QoS 1 message between MQTT 3.1.1 clients", async () => {
  const broker = await startEmbeddedBroker({ port: 0 });
  try {
    const { client: sub } = await connect(broker.url, { protocolVersion: 4 });
    const { client: pub } = await connect(broker.url, { protocolVersion: 4 });
    await sub.subscribeAsync("feedline/test/+", { qos: 1 });
    const received = nextMessage(sub);
    await pub.publishAsync("feedline/test/a", "21.5", { qos: 1 });
    assert.deepEqual(await received, { topic: "feedline/test/a", payload: "21.5", qos: 1 });
    await Promise.all([sub.endAsync(), pub.endAsync()]);
  } finally {
    await broker.close();
  }
});

Deno.test("the embedded broker closes while clients are still connected", async () => {
  const broker = await startEmbeddedBroker({ port: 0 });
  const { client } = await connect(broker.url, { protocolVersion: 4 });
  const closed = new Promise<void>((resolve) => client.once("close", () => resolve()));
  await broker.close();
  await closed;
  await client.endAsync();
});

Deno.test("the embedded broker falls back to a free port when the requested one is taken", async () => {
  const taken = await occupyPort();
  const busyPort = (taken.address() as { port: number }).port;
  try {
    const broker = await startEmbeddedBroker({ port: busyPort });
    await broker.close();
    assert.equal(broker.fellBack, true);
    assert.notEqual(broker.port, busyPort);
    assert.equal(broker.url, `mqtt://127.0.0.1:${broker.port}`);
  } finally {
    await release(taken);
  }
});

Deno.test("the embedded database takes an unnest insert and skips conflicting rows", async () => {
  const db = await startEmbeddedDatabase({ dataDir: null });
  const sql = postgres(db.url, { max: 2, ssl: false });
  try {
    await sql`create table v (id bigint primary key, value float8, tag text)`;
    const insert = (ids: string[], values: number[], tags: (string | null)[]) =>
      sql<{ id: string }[]>`
        insert into v select * from unnest(${ids}::bigint[], ${values}::float8[], ${tags}::text[])
        on conflict do nothing returning id`;
    const first = await insert(["1", "2"], [1.5, 2.5], ["a", null]);
    const second = await insert(["2", "3"], [9, 3.5], ["b", "c"]);
    assert.deepEqual(first.map((r) => r.id), ["1", "2"]);
    assert.deepEqual(second.map((r) => r.id), ["3"]);
    const stored = await sql`select id::int, value, tag from v order by id`;
    assert.deepEqual([...stored], [
      { id: 1, value: 1.5, tag: "a" },
      { id: 2, value: 2.5, tag: null },
      { id: 3, value: 3.5, tag: "c" },
    ]);
  } finally {
    await sql.end();
    await db.close();
  }
});

Deno.test("the embedded database hides a rolled-back transaction from a second connection", async () => {
  const db = await startEmbeddedDatabase({ dataDir: null, maxConnections: 2 });
  const a = postgres(db.url, { max: 1, ssl: false });
  const b = postgres(db.url, { max: 1, ssl: false });
  try {
    await a`create table t (n int)`;
    let countSeenByB: Promise<number> | undefined;
    await assert.rejects(
      a.begin(async (tx) => {
        await tx`insert into t values (1)`;
        // the embedded server (src/embedded/pglite_server.ts) holds b's query until a's transaction ends.
        countSeenByB = b`select count(*)::int as n from t`.then(([row]) => row.n);
        // Wall time on purpose: b's query must reach the server while this transaction is
        // open, and nothing the server shows says it has (a wait that is too short only
        // makes the test pass without testing the hold).
        await new Promise((resolve) => setTimeout(resolve, 50));
        throw new Error("abort");
      }),
      /abort/,
    );
    assert.equal(await countSeenByB, 0);
    await a.begin((tx) => tx`insert into t values (2)`);
    assert.deepEqual([...await b`select n from t`], [{ n: 2 }]);
  } finally {
    await Promise.all([a.end(), b.end()]);
    await db.close();
  }
});

Deno.test("the embedded database keeps its data in dataDir across restarts; a child process makes it first", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "feedline-pglite-" });
  // A missing parent too: serve points dataDir at paths that do not exist yet.
  const dataDir = `${tmp}/nested/pg`;
  try {
    for (const n of [1, 2]) {
      const db = await startEmbeddedDatabase({ dataDir });
      const sql = postgres(db.url, { max: 1, ssl: false, onnotice: () => {} });
      await sql`create table if not exists t (n int)`;
      await sql`insert into t values (${n})`;
      const rows = await sql`select n from t order by n`;
      await sql.end();
      await db.close();
      assert.deepEqual(rows.map((r) => r.n), n === 1 ? [1] : [1, 2]);
      assert.equal(db.dataDir, dataDir);
      // initdb's memory leaves with the child (src/embedded/initdb_apart.ts).
      assert.equal(db.started, n === 1 ? "child" : "existing");
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("the embedded database falls back to a free port when the requested one is taken", async () => {
  const taken = await occupyPort();
  const busyPort = (taken.address() as { port: number }).port;
  try {
    const db = await startEmbeddedDatabase({ dataDir: "memory://", port: busyPort });
    const sql = postgres(db.url, { max: 1, ssl: false });
    const [row] = await sql`select 1 as one`;
    await sql.end();
    await db.close();
    assert.equal(row.one, 1);
    assert.equal(db.fellBack, true);
    assert.notEqual(db.port, busyPort);
    assert.equal(db.dataDir, null);
  } finally {
    await release(taken);
  }
});

Deno.test("withTestDatabase() hands over a migrated database", async () => {
  await withTestDatabase(async (sql, url) => {
    const [{ n }] = await sql`select count(*)::int as n from schema_migrations`;
    assert.ok(n > 0, `expected applied migrations, got ${n}`);
    assert.match(url, /^postgres:\/\//);
  });
});

Deno.test("withTestBroker() gives a broker that speaks the protocolVersion it reports", async () => {
  await withTestBroker(async ({ url, protocolVersion }) => {
    const { client } = await connect(url, { protocolVersion });
    await client.endAsync();
  });
});

Deno.test("a QoS 1 message queued for an offline persistent session survives a Mosquitto restart", async () => {
  const broker = await startMosquitto({ persistence: true });
  const topic = `feedline/test/${crypto.randomUUID()}`;
  const subscriber: mqtt.IClientOptions = {
    protocolVersion: 5,
    clientId: `feedline-test-${crypto.randomUUID().slice(0, 8)}`,
    clean: false,
    // MQTT v5 §3.1.2.11.2: without a session expiry the session ends at disconnect.
    properties: { sessionExpiryInterval: 3600 },
  };
  try {
    const { client: sub } = await connect(broker.url, subscriber);
    await sub.subscribeAsync(topic, { qos: 1 });
    await sub.endAsync();

    const { client: pub } = await connect(broker.url, { protocolVersion: 5 });
    await pub.publishAsync(topic, "queued", { qos: 1 });
    await pub.endAsync();

    await broker.restart();

    let received!: Promise<{ topic: string; payload: string; qos: number }>;
    const { client: back, sessionPresent } = await connect(broker.url, subscriber, (client) => {
      // Installed before CONNACK: the backlog may arrive right after it.
      received = nextMessage(client);
    });
    assert.equal(sessionPresent, true);
    assert.deepEqual(await received, { topic, payload: "queued", qos: 1 });
    await back.endAsync();
  } finally {
    await broker.close();
  }
});

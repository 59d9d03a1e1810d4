/**
 * Messages serve holds across a reconnect (issue 20): written unless the broker sends
 * them again, and then written once, whichever of the two copies comes first. Untimed
 * readings throughout, so a second copy written would be a second row, and a copy thrown
 * away would be a missing one.
 */
import assert from "node:assert/strict";
import mqtt from "mqtt";
import type { Qos } from "../src/core/message.ts";
import { accountingTerms } from "../src/ingest/accounting.ts";
import { CAN_USE_MOSQUITTO, mosquittoBroker, startMosquitto } from "./support/broker.ts";
import { type ServeFixture, startServeFixture } from "./support/fixture.ts";
import { type HeldLock, lockFeedValues } from "./support/lock.ts";
import { type LogLine, recordingLogger } from "./support/logs.ts";
import { endClient, HAVE_MOSQUITTO, publish, type TestServe, waitFor } from "./support/serve.ts";
import { proxiedUrl, type TcpProxy } from "./support/tcp_proxy.ts";

// These tests need a broker that sends a held message again after a reconnect with its
// packet id and DUP set (MQTT §4.4), as Mosquitto does; the embedded aedes gives the copies
// new packet ids.
/**
 * serve with `args`, reaching the broker through a proxy the test can cut (the publisher
 * does not). `reconnect` cuts serve's connection, waits until serve has noticed, and gives
 * back the restore, which waits for the reconnect.
 */
async function serveBehindProxy(args: string[]) {
  let proxy!: TcpProxy;
  const logs: LogLine[] = [];
  const own = await mosquittoBroker();
  const f = await startServeFixture({
    ...own,
    mqttUrl: (broker) => proxiedUrl(broker.url, (p) => proxy = p),
    args,
    log: recordingLogger(logs),
  });
  const connects = () => logs.filter((l) => l.msg === "connected to broker").length;
  const reconnect = async () => {
    const before = connects();
    proxy.cut();
    await waitFor("serve to lose the broker", () => !f.serve.source.connected);
    return () => {
      proxy.restore();
      return waitFor("serve to reconnect", () => connects() > before);
    };
  };
  const close = async () => {
    await f.close();
    await proxy.close();
    await own.close();
  };
  return { f, proxy: () => proxy, reconnect, close };
}

function assertBalanced(serve: TestServe) {
  const a = accountingTerms(serve.metrics, serve.pipeline.queued, serve.pipeline.inFlight);
  assert.ok(a.balanced, `accounting does not balance: ${JSON.stringify(a)}`);
}

/** Values stored more than once, and how many distinct values are stored. */
async function storedValues(f: ServeFixture): Promise<{ twice: number[]; distinct: number }> {
  const rows = await f.db.sql<{ value: number; n: number }[]>`
    select value, count(*)::int as n from feed_values group by value`;
  return { twice: rows.filter((r) => r.n > 1).map((r) => r.value), distinct: rows.length };
}

async function publishValues(f: ServeFixture, topic: string, from: number, to: number, qos: Qos) {
  for (let v = from; v < to; v++) await publish(f.pub, topic, String(v), { qos });
}

for (const qos of [1, 2] as const) {
  Deno.test({
    name:
      `QoS ${qos}: held messages the broker sends again after a reconnect are written once, before or after their commit`,
    ignore: !CAN_USE_MOSQUITTO,
  }, async () => {
    const { f, proxy, reconnect, close } = await serveBehindProxy([
      ...["--qos", String(qos), "--batch-interval-ms", "20"],
    ]);
    const topic = f.serve.feedTopic(f.user, "d1", "temp");
    const redelivered = () => f.serve.metrics.discarded.get({ reason: "redelivered" });
    let resumed: mqtt.MqttClient | null = null;
    let lock: HeldLock | null = null;
    try {
      const n = 100;
      const received = () => f.serve.metrics.received.total();
      const hasValue = async (v: number) =>
        (await f.db.sql`select 1 from feed_values where value = ${v}`).length > 0;
      // 1. Still uncommitted when their copies arrive: the originals are kept (their
      // receive stamps, so their keys), the acknowledgements go out on the new connection.
      lock = await lockFeedValues(f.db);
      await publishValues(f, topic, 0, n, qos);
      await waitFor("serve to hold them", () => received() === n);
      await (await reconnect())();
      await waitFor("the copies", () => received() === 2 * n);
      await lock.release();
      await waitFor("the last of them written", () => hasValue(n - 1));

      // 2. Committed while serve was away, their acknowledgements void: the copies are
      // acknowledged at once, and not written.
      lock = await lockFeedValues(f.db);
      await publishValues(f, topic, n, 2 * n, qos);
      await waitFor("serve to hold them", () => received() === 3 * n);
      const restore = await reconnect();
      await lock.release();
      await waitFor("the last of them written", () => hasValue(2 * n - 1));
      await restore();
      await waitFor("the copies", () => received() === 4 * n);

      await publish(f.pub, topic, String(2 * n), { qos });
      await waitFor("the sentinel", () => hasValue(2 * n));
      const stored = await storedValues(f);
      assert.deepEqual(stored.twice, [], "no reading written twice");
      assert.equal(stored.distinct, 2 * n + 1, "every reading written");
      assert.equal(redelivered(), 2 * n, "every copy counted once");
      await waitFor("every ack sent", () => f.serve.pipeline.unacked === 0);
      assertBalanced(f.serve);

      // Nothing is left unacknowledged in the session: after a last sentinel, the session
      // taken over by a plain client gets that sentinel and nothing before it.
      // A clean DISCONNECT, behind the acknowledgements already written.
      // QoS 2: and every exchange finished (PUBREC, the broker's PUBREL, our PUBCOMP): a
      // message whose PUBCOMP is not out yet is still the broker's to complete, and a
      // DISCONNECT before it leaves the broker to finish it with the next client.
      const incoming = (f.serve.source.client as unknown as {
        incomingStore: { _inflights?: Map<number, unknown> };
      }).incomingStore;
      await waitFor("every QoS 2 exchange completed", () => (incoming._inflights?.size ?? 0) === 0);
      await new Promise<void>((resolve) => f.serve.source.client.end(false, {}, () => resolve()));
      // And through the proxy: until it passed the last bytes on, the acknowledgements may
      // still be on their way, and the session taken over below would lose them.
      await waitFor("the proxy to pass serve's last bytes on", () => proxy().openSockets() === 0);
      const arrived: string[] = [];
      resumed = mqtt.connect(f.broker.url, {
        protocolVersion: f.broker.protocolVersion,
        clientId: `feedline-test-${f.serve.prefix}`,
        clean: false,
        reconnectPeriod: 0,
        properties: f.broker.protocolVersion === 5 ? { sessionExpiryInterval: 30 } : undefined,
      });
      resumed.on("message", (_t, payload) => arrived.push(String(payload)));
      await new Promise<void>((resolve) => resumed!.once("connect", () => resolve()));
      await publish(f.pub, topic, "last", { qos });
      await waitFor("the last sentinel", () => arrived.includes("last"));
      assert.deepEqual(arrived, ["last"], "every held message and copy was acknowledged");
    } finally {
      await lock?.release();
      if (resumed) await endClient(resumed, true);
      await close();
    }
  });
}

Deno.test({
  name: "a broker restored from a snapshot older than the held messages: each is written once",
  ignore: !HAVE_MOSQUITTO,
  async fn() {
    // Saved only when told (SIGUSR1), so the snapshot is as old as the test makes it.
    const mosquitto = await startMosquitto({
      persistence: true,
      config: "autosave_interval 3600\nmax_queued_messages 0",
    });
    const logs: LogLine[] = [];
    const f = await startServeFixture({
      broker: { url: mosquitto.url, protocolVersion: 5 },
      args: ["--batch-interval-ms", "20", "--batch-size", "200"],
      log: recordingLogger(logs),
    });
    const topic = f.serve.feedTopic(f.user, "d1", "temp");
    let pub: mqtt.MqttClient | null = null;
    let lock: HeldLock | null = null;
    try {
      // The snapshot holds serve's session and subscription, and none of what follows.
      await mosquitto.save();
      lock = await lockFeedValues(f.db);
      const n = 1000;
      await publishValues(f, topic, 0, n, 1);
      await waitFor(
        "serve to hold a batch and a queue",
        () => f.serve.metrics.received.total() === n,
      );
      const { inFlight, queued } = f.serve.pipeline;
      assert.ok(inFlight > 0 && queued > 0 && inFlight + queued === n, `${inFlight} + ${queued}`);

      await mosquitto.kill();
      await mosquitto.restart();
      await waitFor(
        "serve to resume the session",
        () => logs.filter((l) => l.msg === "connected to broker" && l.sessionPresent).length === 1,
      );
      await lock.release();
      pub = mqtt.connect(mosquitto.url, { protocolVersion: 5, reconnectPeriod: 0 });
      await new Promise<void>((resolve) => pub!.once("connect", () => resolve()));
      await publish(pub, topic, String(n), { qos: 1 });
      await waitFor(
        "the sentinel",
        async () => (await f.db.sql`select 1 from feed_values where value = ${n}`).length > 0,
      );
      const stored = await storedValues(f);
      assert.deepEqual(stored.twice, [], "no reading written twice");
      assert.equal(stored.distinct, n + 1, "every held message written");
      assert.equal(f.serve.metrics.discarded.total(), 0, "nothing given up");
      assertBalanced(f.serve);
    } finally {
      await lock?.release();
      if (pub) await endClient(pub, true);
      await f.close();
      await mosquitto.close();
    }
  },
});

Deno.test({
  name:
    "QoS 1: oversized messages held across a reconnect are known again by their digest: one reject each",
  ignore: !CAN_USE_MOSQUITTO,
}, async () => {
  const { f, reconnect, close } = await serveBehindProxy([
    ...["--qos", "1", "--batch-interval-ms", "20"],
  ]);
  const topic = f.serve.feedTopic(f.user, "d1", "temp");
  const received = () => f.serve.metrics.received.total();
  let lock: HeldLock | null = null;
  try {
    lock = await lockFeedValues(f.db);
    // A reading first: its batch waits on the lock, and the rejects wait behind it.
    await publish(f.pub, topic, "1", { qos: 1 });
    await waitFor("the reading's batch", () => f.serve.pipeline.inFlight === 1);
    // Five payloads over --max-payload-bytes with the same first kilobyte (all serve
    // keeps of them), and one more with the same bytes as the first.
    const big = (tail: number) => new Uint8Array(200_000).fill(0x30, 0, 1024).fill(tail, 1024);
    const tails = [0x41, 0x42, 0x43, 0x44, 0x45, 0x41];
    for (const t of tails) await publish(f.pub, topic, big(t), { qos: 1 });
    await waitFor("serve to hold them", () => received() === 1 + tails.length);
    await (await reconnect())();
    await waitFor("the copies", () => received() === 2 * (1 + tails.length));
    await lock.release();
    await publish(f.pub, topic, "2", { qos: 1 });
    await waitFor(
      "the sentinel",
      async () => (await f.db.sql`select 1 from feed_values where value = 2`).length > 0,
    );
    const rejects = await f.db.sql<{ size: number; kept: number }[]>`
      select payload_size as size, length(payload) as kept from ingest_rejects
      where reason = 'too_large'`;
    assert.deepEqual(
      rejects.map((r) => [r.size, r.kept]),
      tails.map(() => [200_000, 1024]),
      "one reject per message: each copy known by its digest, none taken for another",
    );
    assert.equal(f.serve.metrics.discarded.get({ reason: "redelivered" }), 1 + tails.length);
    await waitFor("every ack sent", () => f.serve.pipeline.unacked === 0);
    assertBalanced(f.serve);
  } finally {
    await lock?.release();
    await close();
  }
});

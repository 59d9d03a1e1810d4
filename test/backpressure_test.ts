/**
 * Memory bounded by feedline itself (issue 15): with a broker that does not cap its
 * in-flight window (Mosquitto `max_inflight_messages 0`), a full queue makes serve stop
 * reading the socket, so what it has read stays within its queue and one batch and the
 * rest waits at the broker; nothing is lost, and holding back longer than the keep-alive
 * does not make serve reconnect.
 *
 * "Read" is measured as the bytes serve's MQTT socket has read (`bytesRead`), in
 * messages: counters inside serve only see what got into its queues, which are bounded by
 * construction.
 */
import assert from "node:assert/strict";
import type { Socket } from "node:net";
import type { MqttClient } from "mqtt";
import { accountingTerms } from "../src/ingest/accounting.ts";
import { startMosquitto } from "./support/broker.ts";
import { startServeFixture } from "./support/fixture.ts";
import { HAVE_MOSQUITTO, publish, type TestServe, waitFor } from "./support/serve.ts";

const QUEUE = 200;
const BATCH = 100;
/** Chunks in the socket's and MQTT.js's stream buffers: some tens of KB, in messages. */
const MARGIN = 1_500;
const FLOOD = 20_000;

/** A reading with its own timestamp, padded to a known size. */
function reading(i: number): string {
  return JSON.stringify({ value: i, ts: 1_767_225_600_000 + i, pad: "x".repeat(100) });
}

function assertBalanced(serve: TestServe) {
  const a = accountingTerms(serve.metrics, serve.pipeline.queued, serve.pipeline.inFlight);
  assert.ok(a.balanced, `accounting does not balance: ${JSON.stringify(a)}`);
}

async function flood(client: MqttClient, topic: string, qos: 0 | 1): Promise<void> {
  // In slices, so the publisher's own memory stays small; the broker queues for serve.
  for (let from = 0; from < FLOOD; from += 1_000) {
    await Promise.all(
      Array.from({ length: 1_000 }, (_, k) => publish(client, topic, reading(from + k), { qos })),
    );
  }
}

for (const qos of [1, 0] as const) {
  Deno.test({
    name: `QoS ${qos}: with no broker in-flight cap, a full queue stops serve reading the ` +
      "socket: what it read stays within queue + batch + a margin, no keep-alive reconnect, nothing lost",
    ignore: !HAVE_MOSQUITTO,
    async fn() {
      // No in-flight cap, and no queue limit: the backlog serve holds back stays at the
      // broker whole (Mosquitto drops QoS 1 beyond max_queued_messages, default 1000).
      const mosquitto = await startMosquitto({
        config: "max_inflight_messages 0\nmax_queued_messages 0",
      });
      const f = await startServeFixture({
        // MQTT 3.1.1: no Receive Maximum either, so nothing but serve limits the flood.
        broker: { url: mosquitto.url, protocolVersion: 4 },
        args: [
          "--qos",
          String(qos),
          "--batch-interval-ms",
          "20",
          "--batch-size",
          String(BATCH),
          "--queue-size",
          String(QUEUE),
          // A short keep-alive: held back longer than 1.5 periods, serve must not take the
          // delayed PINGRESP for a dead broker (a reconnect loses QoS 0 in flight).
          "--keepalive",
          "1",
        ],
      });
      const topic = f.serve.feedTopic(f.user, "d1", "temp");
      const packetBytes = topic.length + reading(FLOOD).length + 8;
      const socket = () => f.serve.source.client.stream as unknown as Socket;
      let reconnects = 0;
      f.serve.source.client.on("reconnect", () => reconnects++);
      const blocker = await f.db.sql.reserve();
      let locked = true;
      try {
        await blocker`begin`;
        await blocker`lock table feed_values in exclusive mode`;
        await flood(f.pub, topic, qos);
        await waitFor("the queue to fill", () => f.serve.pipeline.dataQueued >= QUEUE);
        // Wall time on purpose: for a socket that is still read to take in the flood, and
        // for 2 keep-alives of 1 s to pass without a reconnect (a paused socket reads no
        // PINGRESP, so there is no event to wait for: that is what the test is about).
        await new Promise((r) => setTimeout(r, 2_500));
        const readMessages = Math.round(socket().bytesRead / packetBytes);
        assert.ok(
          readMessages <= QUEUE + BATCH + MARGIN,
          `serve read ${readMessages} messages off the socket with ${QUEUE} queued`,
        );
        assert.ok(f.serve.pipeline.unacked <= QUEUE + BATCH, `unacked ${f.serve.pipeline.unacked}`);
        await blocker`rollback`;
        locked = false;
        await waitFor(
          `all ${FLOOD} readings`,
          async () => (await f.storedCount()) === FLOOD,
          25_000,
        );
        assert.equal(f.serve.metrics.dropped.total(), 0);
        assert.equal(reconnects, 0, "serve reconnected while holding messages back");
        assertBalanced(f.serve);
      } finally {
        if (locked) await blocker`rollback`.catch(() => {});
        blocker.release();
        await f.close();
        await mosquitto.close();
      }
    },
  });
}

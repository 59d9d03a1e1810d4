import assert from "node:assert/strict";
import mqtt, { type IPublishPacket, type MqttClient } from "mqtt";
import { DEFER_ACK, PubackWriter } from "../src/mqtt/ack.ts";
import { withTestBroker } from "./support/broker.ts";
import {
  brokerHasRead,
  connectClient,
  endClient,
  publish,
  uniquePrefix,
  waitFor,
} from "./support/serve.ts";

function subscriber(
  url: string,
  protocolVersion: 4 | 5,
  clientId: string,
  received: IPublishPacket[],
): MqttClient {
  const client = mqtt.connect(url, {
    protocolVersion,
    clientId,
    clean: false,
    reconnectPeriod: 0,
    manualConnect: true,
    properties: protocolVersion === 5 ? { sessionExpiryInterval: 60 } : undefined,
  });
  client.handleMessage = (packet, callback) => {
    received.push(packet);
    callback(DEFER_ACK);
  };
  client.connect();
  return client;
}

Deno.test("PubackWriter acks exactly the messages it is given; the broker redelivers the rest", () =>
  withTestBroker(async ({ url, protocolVersion }) => {
    const prefix = uniquePrefix();
    const clientId = `puback-${prefix}`;
    const first: IPublishPacket[] = [];
    const sub = subscriber(url, protocolVersion, clientId, first);
    await new Promise((r) => sub.once("connect", r));
    await new Promise((r) => sub.subscribe(`${prefix}/#`, { qos: 1 }, r));
    const pub = await connectClient(url, protocolVersion);
    try {
      for (const n of ["1", "2", "3"]) await publish(pub, `${prefix}/x`, n);
      await waitFor("three deliveries", () => first.length === 3);
      const writer = new PubackWriter(sub);
      // Two acks in one tick: one socket write holding both PUBACKs.
      writer.ack(first[0].messageId!);
      writer.ack(first[1].messageId!);
      await brokerHasRead(sub);
      await endClient(sub, true);

      const again: IPublishPacket[] = [];
      const resumed = subscriber(url, protocolVersion, clientId, again);
      try {
        await new Promise((r) => resumed.once("connect", r));
        // What the session still held arrives before a sentinel published now.
        await publish(pub, `${prefix}/x`, "sentinel");
        await waitFor("the sentinel", () => again.some((p) => String(p.payload) === "sentinel"));
        assert.deepEqual(again.map((p) => p.payload.toString()), ["3", "sentinel"]);
      } finally {
        // Leave nothing behind in the shared broker: ack, then end the session.
        const acks = new PubackWriter(resumed);
        for (const p of again) acks.ack(p.messageId!);
        await brokerHasRead(resumed);
        await endClient(resumed, true);
      }
    } finally {
      await endClient(pub);
    }
  }));

/**
 * Deferred acknowledgements with MQTT.js. MQTT.js sends PUBACK (QoS 1) or PUBCOMP
 * (QoS 2) when `handleMessage(packet, callback)` calls back without an error; with an
 * error it skips the acknowledgement and moves on to the next packet (mqtt 5.16,
 * handlers/publish.js and pubrel.js). MQTT.js has no public call to acknowledge later, so
 * this module is the one place that reaches into its internals; test/serve_test.ts and
 * test/puback_writer_test.ts pin the behaviour against a real broker.
 */
import type { IPublishPacket, MqttClient } from "mqtt";
import { Buffer } from "node:buffer";

/** Passed as the error of `handleMessage`'s callback: "don't acknowledge yet". */
export const DEFER_ACK: Error = new Error("feedline: acknowledgement deferred until commit");

interface ClientInternals {
  stream: { write(chunk: Uint8Array): boolean };
  _sendPacket(packet: Record<string, unknown>, cb?: (err?: Error) => void): void;
  _releaseIncomingQoS2Publish?(messageId: number): void;
  incomingStore: { del(packet: { messageId?: number }, cb: () => void): void };
}

/**
 * Sends the acknowledgement MQTT.js skipped for `packet`: PUBACK for QoS 1; for QoS 2
 * (delivered to us at PUBREL, MQTT 5 §4.3.3) drops it from the incoming store and sends
 * PUBCOMP. Only valid on the connection the packet arrived on: after a reconnect the
 * packet id may name a different message (MQTT 5 §2.2.1).
 */
export function sendDeferredAck(client: MqttClient, packet: IPublishPacket): void {
  const internals = client as unknown as ClientInternals;
  const messageId = packet.messageId;
  if (messageId === undefined) return;
  if (packet.qos === 1) {
    internals._sendPacket({ cmd: "puback", messageId });
  } else if (packet.qos === 2) {
    internals.incomingStore.del(packet, () => {});
    internals._releaseIncomingQoS2Publish?.(messageId);
    internals._sendPacket({ cmd: "pubcomp", messageId });
  }
}

/**
 * Sends QoS 1 PUBACKs in bulk: the acks given in one tick (a committed batch acks
 * thousands at once) go out as one socket write instead of one packet object, one
 * encoder pass and three buffers each through MQTT.js. A PUBACK with reason Success and
 * no properties is the same four bytes in MQTT 3.1.1 and 5 (MQTT 5 §3.4.2.1: reason code
 * and property length may be omitted when the reason is 0x00): type 0x40, remaining
 * length 2, packet id. Writes are whole chunks, so they never land inside a packet
 * MQTT.js is writing.
 */
export class PubackWriter {
  readonly #client: MqttClient;
  #ids: number[] = [];
  #scheduled = false;

  constructor(client: MqttClient) {
    this.#client = client;
  }

  /** Queues the PUBACK of `messageId`; sent at the end of the current tick. */
  ack(messageId: number): void {
    this.#ids.push(messageId);
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => this.flush());
  }

  /** Writes the queued PUBACKs now. */
  flush(): void {
    this.#scheduled = false;
    const ids = this.#ids;
    if (ids.length === 0) return;
    this.#ids = [];
    // A PUBACK is only valid on the connection its PUBLISH came in on; the caller drops
    // acks of an older connection before they get here.
    if (!this.#client.connected) return;
    const buf = Buffer.allocUnsafe(ids.length * 4);
    for (let i = 0, o = 0; i < ids.length; i++, o += 4) {
      buf[o] = 0x40;
      buf[o + 1] = 0x02;
      buf[o + 2] = ids[i] >>> 8;
      buf[o + 3] = ids[i] & 0xff;
    }
    (this.#client as unknown as ClientInternals).stream.write(buf);
  }
}

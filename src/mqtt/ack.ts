/**
 * Deferred acknowledgements with MQTT.js. MQTT.js sends PUBACK (QoS 1) when
 * `handleMessage(packet, callback)` calls back without an error; with an error it skips
 * the acknowledgement and moves on to the next packet (mqtt 5.16, handlers/publish.js).
 * QoS 2 it answers with PUBREC on receipt, before any hook of ours could hold it back;
 * feedline holds that PUBREC back until the commit (`holdQos2Receipts`, docs/delivery.md
 * "QoS 2"). MQTT.js has no public call to acknowledge later, so this module is the one
 * place that reaches into its internals; test/serve_test.ts, test/puback_writer_test.ts
 * and test/qos2_backlog_test.ts pin the behaviour against a real broker.
 */
import type { IPublishPacket, MqttClient } from "mqtt";
import { Buffer } from "node:buffer";

/** Passed as the error of `handleMessage`'s callback: "don't acknowledge yet". */
export const DEFER_ACK: Error = new Error("feedline: acknowledgement deferred until commit");

type SendPacket = (packet: Record<string, unknown>, cb?: (err?: Error) => void) => void;

interface ClientInternals {
  stream: { write(chunk: Uint8Array): boolean };
  _sendPacket: SendPacket;
  _releaseIncomingQoS2Publish?(messageId: number): void;
  _trackIncomingQoS2Publish?(messageId: number, ...rest: unknown[]): boolean;
  _incomingQoS2Ids?: Set<number>;
  _receiveMaximum?: number;
  incomingStore: {
    get(packet: { messageId?: number }, cb: (err: Error | null, packet?: unknown) => void): void;
    del(packet: { messageId?: number }, cb: () => void): void;
  };
}

/**
 * Sends the acknowledgement held back for a message: PUBACK for QoS 1, PUBREC for QoS 2
 * (MQTT.js then answers the broker's PUBREL with PUBCOMP). Only valid on the connection
 * the message arrived on: after a reconnect the packet id may name a different message
 * (MQTT 5 §2.2.1).
 */
export function sendDeferredAck(
  client: MqttClient,
  packet: Pick<IPublishPacket, "qos" | "messageId">,
): void {
  const internals = client as unknown as ClientInternals;
  const messageId = packet.messageId;
  if (messageId === undefined) return;
  if (packet.qos === 1) internals._sendPacket({ cmd: "puback", messageId });
  else if (packet.qos === 2) internals._sendPacket({ cmd: "pubrec", messageId });
}

/**
 * Holds back the PUBREC MQTT.js sends on receipt of a QoS 2 PUBLISH, so that the receipt
 * means "committed", as PUBACK does for QoS 1 (docs/delivery.md, "QoS 2"). A broker
 * keeps a QoS 2 message until its PUBREC and then resends only PUBREL, so a PUBREC sent
 * before the commit loses the message in a crash; and a broker that does not hold QoS 2 to
 * the Receive Maximum until PUBCOMP (Mosquitto 2.0.11) then sends a backlog faster than it
 * is written, all of it PUBREC'd and lost in one crash (test/qos2_backlog_test.ts).
 *
 * Returns `withoutReceipt(messageId, proceed)`: runs `proceed` (the rest of MQTT.js's
 * PUBLISH handling: it tracks the message, stores it and sends PUBREC) with that PUBREC
 * suppressed; `sendDeferredAck` sends it after the commit. MQTT.js's default incoming
 * store calls back at once, so the PUBREC is sent, or not, within `proceed`.
 */
export function holdQos2Receipts(
  client: MqttClient,
): (messageId: number, proceed: () => void) => void {
  const internals = client as unknown as ClientInternals;
  const send = internals._sendPacket.bind(client) as SendPacket;
  let holding: number | null = null;
  internals._sendPacket = (packet, cb, ...rest: unknown[]) => {
    if (packet.cmd === "pubrec" && packet.messageId === holding && !packet.reasonCode) {
      holding = null;
      cb?.();
      return;
    }
    (send as (...args: unknown[]) => void)(packet, cb, ...rest);
  };
  return (messageId, proceed) => {
    holding = messageId;
    try {
      proceed();
    } finally {
      holding = null;
    }
  };
}

/**
 * Forgets a QoS 2 message whose PUBREC can no longer be sent (its connection is gone),
 * if MQTT.js still holds this very packet: otherwise its store and its count of messages
 * in flight keep it until the packet id comes round again. A copy the broker sends again
 * is tracked anew.
 */
export function forgetQos2(client: MqttClient, packet: IPublishPacket): void {
  const internals = client as unknown as ClientInternals;
  const messageId = packet.messageId;
  if (messageId === undefined) return;
  internals.incomingStore.get({ messageId }, (err, stored) => {
    if (err || stored !== packet) return;
    internals.incomingStore.del({ messageId }, () => {});
    internals._releaseIncomingQoS2Publish?.(messageId);
  });
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

/**
 * Takes over MQTT.js's Receive Maximum check for inbound QoS 2 (MQTT 5 §3.3.4): MQTT.js
 * closes the connection when more QoS 2 messages than the Receive Maximum are between
 * PUBLISH and PUBCOMP. A broker that counts them out earlier (Mosquitto 2.0.11) sends
 * the next messages while PUBREL and PUBCOMP of the committed ones are still under way.
 * Closing would only make the broker send the same backlog again, and again (issue 20).
 * So the excess is accepted and `onExcess` is told (once per message over the limit);
 * memory stays bounded by serve's queues, which pause the socket when full
 * (docs/delivery.md, "Memory is bounded by the queues").
 */
export function acceptQos2BeyondReceiveMaximum(
  client: MqttClient,
  onExcess: (inFlight: number, receiveMaximum: number) => void,
): void {
  const internals = client as unknown as ClientInternals;
  if (typeof internals._trackIncomingQoS2Publish !== "function") return;
  internals._trackIncomingQoS2Publish = (messageId: number) => {
    const ids = internals._incomingQoS2Ids;
    if (!ids || ids.has(messageId)) return true;
    ids.add(messageId);
    const max = internals._receiveMaximum ?? Infinity;
    if (ids.size > max) onExcess(ids.size, max);
    return true;
  };
}

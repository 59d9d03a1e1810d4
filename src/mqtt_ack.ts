/**
 * Deferred acknowledgements with MQTT.js. MQTT.js sends PUBACK (QoS 1) or PUBCOMP
 * (QoS 2) when `handleMessage(packet, callback)` calls back without an error; with an
 * error it skips the acknowledgement and moves on to the next packet (mqtt 5.16,
 * handlers/publish.js and pubrel.js). MQTT.js has no public call to acknowledge later, so
 * this module is the one place that reaches into its internals; test/mqtt_ack_test.ts
 * pins the behaviour against a real broker.
 */
import type { IPublishPacket, MqttClient } from "mqtt";

/** Passed as the error of `handleMessage`'s callback: "don't acknowledge yet". */
export const DEFER_ACK: Error = new Error("feedline: acknowledgement deferred until commit");

interface ClientInternals {
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

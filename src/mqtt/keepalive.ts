/**
 * Keep-alive with a paused socket (issue 15). MQTT.js drops the connection when no
 * PINGRESP arrives within 1.5 keep-alive periods, but a PINGRESP is read in order, behind
 * every PUBLISH the broker sent before it: while serve holds messages back
 * (src/mqtt/source.ts, back-pressure), the broker's backlog in the socket delays it, and
 * a reconnect would lose the QoS 0 messages the broker had in flight (measured: 26% of
 * 1.5M at 50k/s offered). So a connection that delivered a message within the last
 * keep-alive period, or that serve is holding back itself, is alive: ping again (the
 * broker needs a packet from us within 1.5 periods) and wait another round. A broker that
 * is really gone still fails the socket's writes.
 */
import type { MqttClient } from "mqtt";

/** Tells the keep-alive that the connection carries traffic. */
export interface TrafficNote {
  /** A PUBLISH arrived now. */
  delivered(): void;
}

/**
 * Replaces MQTT.js's keep-alive timeout on `client`: a connection with recent PUBLISH
 * traffic, or one held back (`holdingBack()`), is pinged again instead of dropped.
 */
export function keepAliveWhileBusy(
  client: MqttClient,
  keepaliveSec: number,
  holdingBack: () => boolean,
): TrafficNote {
  let lastPublishAt = 0;
  const keepaliveTimeout = client.onKeepaliveTimeout.bind(client);
  client.onKeepaliveTimeout = () => {
    const alive = holdingBack() || Date.now() - lastPublishAt < keepaliveSec * 1000;
    if (!alive || !client.connected || !client.keepaliveManager) return keepaliveTimeout();
    client.sendPing();
    client.keepaliveManager.reschedule();
  };
  return {
    delivered() {
      lastPublishAt = Date.now();
    },
  };
}

/**
 * The effective in-flight window: how many QoS 1 messages the broker sends to one
 * subscriber before it waits for acknowledgements. Measured twice on a subscriber that
 * defers its acks like `serve` does: never acking (the window as configured), and acking
 * in bursts every `ackEveryMs` (what `serve` does after each commit; some brokers let
 * more through then).
 */
import mqtt from "mqtt";
import { DEFER_ACK, sendDeferredAck } from "../src/mqtt/ack.ts";

/** Result of a window probe. */
export interface WindowProbe {
  /** Messages received with no acknowledgement sent. */
  withoutAcks: number;
  /** Most messages outstanding (received, not acked) while acking in bursts. */
  withBurstAcks: number;
}

async function once(
  url: string,
  protocolVersion: 4 | 5,
  receiveMaximum: number,
  ackEveryMs: number | null,
  messages: number,
): Promise<number> {
  const id = `bench-window-${crypto.randomUUID().slice(0, 8)}`;
  const topic = `${id}/w`;
  const sub = mqtt.connect(url, {
    protocolVersion,
    clientId: id,
    clean: true,
    reconnectPeriod: 0,
    properties: protocolVersion === 5 ? { receiveMaximum } : undefined,
  });
  let outstanding = 0;
  let most = 0;
  let pending: mqtt.IPublishPacket[] = [];
  sub.handleMessage = (packet, callback) => {
    outstanding++;
    most = Math.max(most, outstanding);
    pending.push(packet);
    callback(DEFER_ACK);
  };
  await new Promise((r) => sub.once("connect", r));
  await new Promise((r) => sub.subscribe(topic, { qos: 1 }, r));
  const timer = ackEveryMs === null ? undefined : setInterval(() => {
    const batch = pending;
    pending = [];
    for (const p of batch) sendDeferredAck(sub, p);
    outstanding -= batch.length;
  }, ackEveryMs);
  const pub = mqtt.connect(url, { protocolVersion: 4, clean: true, reconnectPeriod: 0 });
  await new Promise((r) => pub.once("connect", r));
  for (let i = 0; i < messages; i++) pub.publish(topic, "1", { qos: 1 });
  await new Promise((r) => setTimeout(r, 1500));
  clearInterval(timer);
  await new Promise<void>((r) => pub.end(true, {}, () => r()));
  await new Promise<void>((r) => sub.end(true, {}, () => r()));
  return most;
}

/** Probes the window a subscriber with `receiveMaximum` (MQTT 5) gets from the broker. */
export async function probeWindow(
  url: string,
  protocolVersion: 4 | 5,
  receiveMaximum: number,
): Promise<WindowProbe> {
  return {
    withoutAcks: await once(url, protocolVersion, receiveMaximum, null, 2000),
    withBurstAcks: await once(url, protocolVersion, receiveMaximum, 20, 20_000),
  };
}

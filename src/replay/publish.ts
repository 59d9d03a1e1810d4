/**
 * `replay --publish`: sends captured messages to a broker instead of the database, at
 * the pace they were received (`speed` 1), N times faster, or as fast as the broker
 * takes them (`speed` Infinity): for load tests and for reproducing an incident.
 *
 * Each message keeps its topic, payload, QoS and retain flag. The pace follows the
 * capture's received_at: message i is sent (t_i − t_0) / speed after the first. At
 * most `window` publishes wait for the broker at once (QoS 1/2 acknowledgements, QoS 0
 * socket writes), so a fast file cannot fill memory.
 */
import type { MqttClient } from "mqtt";
import { Buffer } from "node:buffer";
import type { ReadItem } from "../capture/reader.ts";
import { selectMessages, type SelectOptions } from "./input.ts";
import type { ReplayTotals } from "./totals.ts";

/** What re-publishing needs. */
export interface RepublishOptions extends SelectOptions {
  client: MqttClient;
  /** 1: original pace; N: N times faster; Infinity: no waiting. */
  speed: number;
  /** Most publishes awaiting the broker at once. */
  window?: number;
}

/** Publishes the messages of `input`; counts into `totals`. */
export async function republish(
  input: AsyncIterable<ReadItem[]>,
  opts: RepublishOptions,
  totals: ReplayTotals,
): Promise<void> {
  const window = opts.window ?? 1000;
  let outstanding = 0;
  let room: (() => void) | null = null;
  let firstUs: number | null = null;
  let startedMs = 0;

  const settle = (error?: Error) => {
    outstanding--;
    if (error) totals.publishFailed++;
    else totals.published++;
    if (room && outstanding < window) {
      const wake = room;
      room = null;
      wake();
    }
  };

  for await (const messages of selectMessages(input, opts, totals)) {
    for (const m of messages) {
      if (Number.isFinite(opts.speed)) {
        if (firstUs === null) {
          firstUs = m.receivedAtUs;
          startedMs = performance.now();
        }
        const dueMs = startedMs + (m.receivedAtUs - firstUs) / 1000 / opts.speed;
        const wait = dueMs - performance.now();
        if (wait >= 1) await new Promise((resolve) => setTimeout(resolve, wait));
      }
      while (outstanding >= window) await new Promise<void>((resolve) => room = resolve);
      outstanding++;
      totals.processed++;
      opts.client.publish(
        m.topic,
        Buffer.from(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength),
        { qos: m.qos, retain: m.retain },
        (error) => settle(error),
      );
    }
  }
  while (outstanding > 0) await new Promise<void>((resolve) => room = resolve);
}

/**
 * `simulate --format sparkplug`: the fleet as a Sparkplug B network (docs/simulate.md,
 * "Sparkplug B"), for a serve run with `--sparkplug-tenant`. Each user of the fleet is an
 * edge node `edge-<n>` of the group `sim`, on one MQTT connection of its own, and its
 * devices are the Sparkplug devices behind it; each feed is a metric named by its kind
 * (`temperature`, `switch`, ...), so serve stores it as the feed
 * `sim.edge-<n>.<device>.<kind>`.
 *
 * Each connection behaves like an edge node: its MQTT will is an NDEATH with the session's
 * bdSeq; once connected it publishes an NBIRTH and a DBIRTH per device (names, aliases,
 * datatypes, current values), then the traffic sends DDATA by alias alone with every
 * metric of a device, each message numbered by the node's `seq`; a dropped connection
 * comes back with the next bdSeq and births again; asked for a rebirth (NCMD
 * `Node Control/Rebirth`, serve's `--sparkplug-rebirth`) it births again; at the end it
 * publishes its NDEATH (a clean disconnect discards the will).
 */
import type { MqttClient } from "mqtt";
import { Buffer } from "node:buffer";
import { encodeSparkplug, type MetricSpec } from "../core/sparkplug/encode.ts";
import { DATATYPES, decodeWire } from "../core/sparkplug/schema.ts";
import { sparkplugTopic } from "../core/sparkplug/topic.ts";
import type { LinkPresence } from "./device_links.ts";
import { createFeedModel, type FeedModel, type ModelValue } from "./feed_models.ts";
import type { Fleet, FleetDevice, FleetFeed } from "./fleet.ts";
import { createRng } from "./prng.ts";
import type { SimMessage, Traffic } from "./traffic.ts";

/** The Sparkplug group of the simulated edge nodes. */
export const SIM_GROUP = "sim";

interface SimMetric {
  feed: FleetFeed;
  name: string;
  alias: number;
  datatype: number;
}

interface SimNode {
  edge: string;
  devices: { device: FleetDevice; metrics: SimMetric[] }[];
  bdSeq: number;
  seq: number;
  /**
   * The last payload timestamp (ms) the node sent: each payload gets a later one, so a
   * metric never has two values at one time (feedline keys readings by feed and time and
   * would dead-letter the second as value_conflict).
   */
  lastMs: number;
}

/** The Sparkplug side of a simulation: its connections' behaviour and its traffic. */
export interface SparkplugFleet {
  /** Edge nodes, one connection each. */
  nodes: number;
  presence: LinkPresence;
  traffic: Traffic<Uint8Array>;
}

const nowMs = () => Date.now();

/** Builds the network of `fleet` under `namespace`; randomness from `seed`. */
export function createSparkplugFleet(
  fleet: Fleet,
  opts: { seed: number; namespace: string },
): SparkplugFleet {
  const rng = createRng(opts.seed, 4);
  const models = new Map<FleetFeed, FeedModel>();
  const last = new Map<FleetFeed, ModelValue>();
  const nodes: SimNode[] = fleet.users.map((user, n) => {
    let alias = 0;
    return {
      edge: `edge-${n + 1}`,
      bdSeq: 0,
      seq: 0,
      lastMs: 0,
      devices: user.devices.map((device) => ({
        device,
        metrics: device.feeds.map((feed) => {
          models.set(feed, createFeedModel(feed.kind, rng));
          return {
            feed,
            name: nameOf(device, feed),
            alias: alias++,
            datatype: feed.kind === "switch" ? DATATYPES.Boolean : DATATYPES.Double,
          };
        }),
      })),
    };
  });
  const deviceNode = new Map<FleetDevice, number>();
  nodes.forEach((node, n) => node.devices.forEach((d) => deviceNode.set(d.device, n)));
  const topic = (node: SimNode, type: Parameters<typeof sparkplugTopic>[2], device?: string) =>
    sparkplugTopic(opts.namespace, SIM_GROUP, type, node.edge, device);
  const valueOf = (m: SimMetric, tUs: number) => {
    const v = models.get(m.feed)!.next(tUs);
    last.set(m.feed, v);
    return m.datatype === DATATYPES.Boolean ? v.text === "ON" : v.value ?? 0;
  };
  const stampOf = (node: SimNode, ms: number) => node.lastMs = Math.max(ms, node.lastMs + 1);
  const nextSeq = (node: SimNode) => {
    const seq = node.seq;
    node.seq = (node.seq + 1) % 256;
    return seq;
  };
  const death = (node: SimNode) =>
    Buffer.from(encodeSparkplug({
      timestamp: nowMs(),
      metrics: [{ name: "bdSeq", datatype: DATATYPES.Int64, value: node.bdSeq }],
    }));
  const births = (node: SimNode, client: MqttClient, qos: 0 | 1 | 2) => {
    node.seq = 0;
    const t = stampOf(node, nowMs());
    const nbirth: MetricSpec[] = [
      { name: "bdSeq", datatype: DATATYPES.Int64, value: node.bdSeq },
      { name: "Node Control/Rebirth", datatype: DATATYPES.Boolean, value: false },
    ];
    const send = (type: "NBIRTH" | "DBIRTH", metrics: MetricSpec[], device?: string) =>
      client.publish(
        topic(node, type, device),
        Buffer.from(encodeSparkplug({ timestamp: t, seq: nextSeq(node), metrics })),
        { qos },
      );
    send("NBIRTH", nbirth);
    for (const { device, metrics } of node.devices) {
      send(
        "DBIRTH",
        metrics.map((m) => ({
          name: m.name,
          alias: m.alias,
          datatype: m.datatype,
          value: valueOf(m, t * 1000),
        })),
        device.code,
      );
    }
  };

  const presence: LinkPresence = {
    will: (index) => ({ topic: topic(nodes[index], "NDEATH"), payload: death(nodes[index]) }),
    connected(index, client, qos) {
      const node = nodes[index];
      births(node, client, qos);
      client.subscribe(topic(node, "NCMD"), { qos: 0 });
      client.removeAllListeners("message");
      client.on("message", (_topic, payload) => {
        try {
          const cmd = decodeWire(payload);
          const asked = cmd.metrics?.some((m) =>
            m.name === "Node Control/Rebirth" && m.booleanValue === true
          );
          if (asked) births(node, client, qos);
        } catch {
          // Not a Sparkplug command: an edge node ignores it.
        }
      });
    },
    lost(index, client) {
      // The broker published the will; the next session has the next bdSeq.
      const node = nodes[index];
      node.bdSeq = (node.bdSeq + 1) % 256;
      client.options.will = { ...client.options.will!, payload: death(node) };
    },
    closing(index, client, qos) {
      client.publish(topic(nodes[index], "NDEATH"), death(nodes[index]), { qos });
    },
  };

  const traffic: Traffic<Uint8Array> = {
    reasons: [],
    next(tUs: number): SimMessage<Uint8Array> {
      const device = fleet.devices[rng.int(fleet.devices.length)];
      const n = deviceNode.get(device)!;
      const node = nodes[n];
      const { metrics } = node.devices.find((d) => d.device === device)!;
      const payload = encodeSparkplug({
        timestamp: stampOf(node, Math.floor(tUs / 1000)),
        seq: nextSeq(node),
        metrics: metrics.map((m) => ({
          alias: m.alias,
          datatype: m.datatype,
          sendDatatype: false,
          value: valueOf(m, tUs),
        })),
      });
      return {
        topic: topic(node, "DDATA", device.code),
        payload,
        device: n,
        kind: "mapped",
        readings: metrics.length,
      };
    },
  };
  return { nodes: nodes.length, presence, traffic };
}

/** A metric's name: its feed's key without the device code (its kind, maybe numbered). */
function nameOf(device: FleetDevice, feed: FleetFeed): string {
  const prefix = `${device.code}-`;
  return feed.key.startsWith(prefix) ? feed.key.slice(prefix.length) : feed.key;
}

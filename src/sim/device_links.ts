/**
 * The MQTT connections of a simulated fleet. Devices are spread over the connections
 * round-robin; with one connection per device (the default) each device behaves like a
 * real one: it announces `online` on its status topic when it connects, and its MQTT
 * last will (MQTT 5 §3.1.2.5, 3.1.1 §3.1.2.5) is `offline` on the same topic, so the
 * broker reports a connection that drops without a DISCONNECT. A connection can have
 * only one will: when it carries several devices, the first one's is set.
 *
 * A clean DISCONNECT makes the broker discard the will (MQTT 5 §3.14.4), so at the end
 * each device publishes `offline` itself before disconnecting.
 */
import type { Buffer } from "node:buffer";
import mqtt, { type MqttClient } from "mqtt";
import type { Qos } from "../core/message.ts";
import { awaitFirstConnect } from "../mqtt/connect.ts";
import type { MqttTlsOptions, MqttTlsSettings } from "../mqtt/tls.ts";
import { createPacer } from "./pacer.ts";

/**
 * How a connection announces itself, when not by `online`/`offline` on its status topic
 * (a Sparkplug B edge node: src/sim/sparkplug_fleet.ts). Each gets the connection index.
 */
export interface LinkPresence {
  /** The last will set when the connection is created. */
  will(index: number): { topic: string; payload: Buffer };
  /** Once connected (and after each reconnect). */
  connected(index: number, client: MqttClient, qos: Qos): void;
  /** The connection was lost (the broker published the will); it will reconnect. */
  lost(index: number, client: MqttClient): void;
  /** At the end, before a clean disconnect (which discards the will). */
  closing(index: number, client: MqttClient, qos: Qos): void;
}

/** Where and how to connect. */
export interface DeviceLinksOptions {
  url: string;
  username?: string;
  password?: string;
  protocolVersion: 4 | 5;
  keepaliveSec: number;
  clientIdPrefix: string;
  /** The status topic of each device, by device index. */
  statusTopics: string[];
  /** What a device publishes there (default `online` / `offline`; `--format` has its own). */
  statusWords?: { online: string; offline: string };
  connections: number;
  /** New connections opened per second at most, so a large fleet does not storm the broker. */
  connectRate: number;
  /** Delay before reconnecting a lost connection; a churn drop picks its own. */
  reconnectMs: number;
  /** QoS of status messages and of the will. */
  statusQos: Qos;
  /** How long the first connection may take before the broker counts as unreachable. */
  connectTimeoutMs: number;
  /** TLS options for mqtts:// and wss:// (src/mqtt/tls.ts made them). */
  tls?: MqttTlsOptions;
  /** Replaces the status topics' `online`/`offline` and will (one status topic per connection). */
  presence?: LinkPresence;
  /** The TLS settings they came from, to explain a failed first connect. */
  tlsSettings?: MqttTlsSettings;
}

/** Counters of connection life. */
export interface LinkStats {
  /** CONNACKs received, first connects and reconnects. */
  connects: number;
  /** Connections lost that we did not drop on purpose. */
  lost: number;
  /** Connections dropped on purpose (churn), the broker then publishes the will. */
  drops: number;
  /** `online` and `offline` messages published by the devices themselves. */
  statusSent: number;
  /** Client errors (refused connects, socket errors). */
  errors: number;
  lastError: string | null;
}

/** The connections of a fleet. */
export interface DeviceLinks {
  /** The client that publishes for device `device`. */
  clientFor(device: number): MqttClient;
  readonly size: number;
  /** Connections currently up. */
  readonly up: number;
  readonly stats: LinkStats;
  /** Opens the connections (paced), resolves when all are up or `timeoutMs` has passed. */
  open(timeoutMs: number): Promise<void>;
  /** Drops connection `index` without a DISCONNECT; it comes back after `downtimeMs`. */
  drop(index: number, downtimeMs: number): boolean;
  /** Indexes of the connections that are up. */
  upIndexes(): number[];
  /** Publishes `offline` for every device of a live connection, disconnects all. */
  close(timeoutMs: number): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves when `promise` does or after `ms`, whichever comes first; leaves no timer. */
function settleWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<void>((resolve) => timer = setTimeout(resolve, ms)),
  ]).then(() => clearTimeout(timer));
}

const endClient = (client: MqttClient, force: boolean) =>
  new Promise<void>((resolve) => client.end(force, {}, () => resolve()));

/**
 * Creates (but does not open) the connections of a fleet.
 *
 * @example
 * ```ts
 * const links = createDeviceLinks({ url, protocolVersion: 5, statusTopics, connections: 10, ... });
 * await links.open(30_000);
 * links.clientFor(3).publish(topic, "21.5");
 * await links.close(5_000);
 * ```
 */
export function createDeviceLinks(opts: DeviceLinksOptions): DeviceLinks {
  const n = Math.max(1, Math.min(opts.connections, opts.statusTopics.length));
  const devicesOf: number[][] = Array.from({ length: n }, () => []);
  opts.statusTopics.forEach((_, i) => devicesOf[i % n].push(i));
  const clients: (MqttClient | null)[] = new Array(n).fill(null);
  const dropping = new Set<number>();
  const stats: LinkStats = {
    connects: 0,
    lost: 0,
    drops: 0,
    statusSent: 0,
    errors: 0,
    lastError: null,
  };
  let closing = false;

  const words = opts.statusWords ?? { online: "online", offline: "offline" };
  const publishStatus = (client: MqttClient, devices: number[], status: "online" | "offline") => {
    for (const d of devices) {
      stats.statusSent++;
      client.publish(opts.statusTopics[d], words[status], { qos: opts.statusQos }, () => {});
    }
  };

  function create(index: number): MqttClient {
    const devices = devicesOf[index];
    const client = mqtt.connect(opts.url, {
      ...opts.tls,
      clientId: `${opts.clientIdPrefix}-${index}`,
      username: opts.username,
      password: opts.password,
      protocolVersion: opts.protocolVersion,
      keepalive: opts.keepaliveSec,
      clean: true,
      reconnectPeriod: opts.reconnectMs,
      connectTimeout: opts.connectTimeoutMs,
      will: {
        ...(opts.presence
          ? opts.presence.will(index)
          : { topic: opts.statusTopics[devices[0]], payload: words.offline }),
        qos: opts.statusQos,
        retain: false,
      },
    });
    let up = false;
    client.on("connect", () => {
      up = true;
      stats.connects++;
      dropping.delete(index);
      client.options.reconnectPeriod = opts.reconnectMs;
      if (opts.presence) opts.presence.connected(index, client, opts.statusQos);
      else publishStatus(client, devices, "online");
    });
    client.on("close", () => {
      // A failed reconnect attempt closes too; count only connections that were up.
      if (up && !closing && !dropping.has(index)) stats.lost++;
      if (up && !closing) opts.presence?.lost(index, client);
      up = false;
    });
    client.on("error", (error) => {
      stats.errors++;
      stats.lastError = error.message;
    });
    clients[index] = client;
    return client;
  }

  const upIndexes = () => clients.flatMap((c, i) => (c?.connected ? [i] : []));

  return {
    clientFor: (device) => clients[device % n]!,
    size: n,
    get up() {
      let k = 0;
      for (const c of clients) if (c?.connected) k++;
      return k;
    },
    stats,
    async open(timeoutMs) {
      // The first connection tells whether the broker is there at all.
      await awaitFirstConnect(create(0), {
        url: opts.url,
        timeoutMs: opts.connectTimeoutMs,
        tls: opts.tlsSettings,
        hint: opts.protocolVersion === 5
          ? " (an embedded feedline broker speaks MQTT 3.1.1 only: --mqtt-protocol 3.1.1)"
          : "",
      });
      const pacer = createPacer({ rate: opts.connectRate, startMs: performance.now() });
      let next = 1;
      while (next < n && !closing) {
        const k = pacer.take(performance.now(), n - next);
        for (let i = 0; i < k; i++) create(next++);
        if (next < n) await sleep(Math.max(1, pacer.waitMs(performance.now())));
      }
      const deadline = Date.now() + timeoutMs;
      while (!closing && upIndexes().length < n && Date.now() < deadline) await sleep(20);
    },
    drop(index, downtimeMs) {
      const client = clients[index];
      if (!client?.connected || closing) return false;
      dropping.add(index);
      stats.drops++;
      // MQTT.js reconnects `reconnectPeriod` after the socket closes.
      client.options.reconnectPeriod = Math.max(1, Math.round(downtimeMs));
      client.stream.destroy();
      return true;
    },
    upIndexes,
    async close(timeoutMs) {
      closing = true;
      await Promise.all(clients.map((client, i) => {
        if (!client) return Promise.resolve();
        // Down (its will was published) or never up: just stop its reconnect timer.
        if (!client.connected) return endClient(client, true);
        if (opts.presence) opts.presence.closing(i, client, opts.statusQos);
        else publishStatus(client, devicesOf[i], "offline");
        // A graceful end waits for the broker's acks; a broker that went away meanwhile
        // must not hold the exit forever.
        return settleWithin(endClient(client, false), timeoutMs).then(() =>
          endClient(client, true)
        );
      }));
    },
  };
}

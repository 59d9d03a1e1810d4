/**
 * The MQTT source: connects, subscribes, hands each message to the pipeline and sends
 * its acknowledgement only when told to (after the commit). Knows nothing of SQL.
 *
 * Persistent session (clean start off, a stable client id, a session expiry on v5), so
 * the broker keeps what arrives while we are away and redelivers what we did not ack.
 *
 * No message may stop the packet loop or the process: anything thrown while handing a
 * message over is caught, the message is acknowledged (so it cannot come back and fail
 * again forever) and reported through `onDeliveryError`.
 */
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from "mqtt";
import { Buffer } from "node:buffer";
import { nowUs } from "../clock.ts";
import { FeedlineError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { redactUrl } from "../log.ts";
import type { Ack, Inbound, Qos } from "../core/message.ts";
import { DEFER_ACK, PubackWriter, sendDeferredAck } from "./ack.ts";
import {
  connectFailureLine,
  INSECURE_WARNING,
  type MqttTlsSettings,
  resolveMqttTls,
} from "./tls.ts";

/** Options of the MQTT source. */
export interface MqttSourceOptions {
  url: string;
  username?: string;
  password?: string;
  clientId: string;
  protocolVersion: 4 | 5;
  qos: Qos;
  filters: string[];
  /** Subscribe as `$share/<group>/<filter>` (MQTT 5 §4.8.2) to spread load over instances. */
  sharedGroup?: string;
  keepaliveSec: number;
  /** v5 only: how long the broker keeps our session while we are away. */
  sessionExpirySec: number;
  /** v5 only: most unacknowledged QoS 1/2 messages we accept at once (§3.1.2.11.3). */
  receiveMaximum: number;
  connectTimeoutMs: number;
  /** TLS files and the opt-out (src/mqtt/tls.ts); read here, before connecting. */
  tls?: MqttTlsSettings;
  /**
   * A QoS 0 message that finds its queue full: `pause` (the default) holds it and stops
   * reading the socket until there is room, as for QoS 1/2, so the broker holds or drops
   * per its own limits; `drop` drops and counts it (`onDrop(..., "queue_full")`).
   */
  qos0WhenFull?: "pause" | "drop";
  log: Logger;
  /** Takes a message; false when its queue is full. */
  deliver(inbound: Inbound, ack: Ack | null): boolean;
  /** Resolves when the queues have room again. */
  waitForRoom(): Promise<void>;
  /**
   * A QoS 0 message not taken: its queue was full under `qos0WhenFull: "drop"`
   * (`queue_full`), or it arrived after `stopReading()` (`shutdown`).
   */
  onDrop(inbound: Inbound, reason: "queue_full" | "shutdown"): void;
  /**
   * `deliver` (or anything before it) threw on a message: it was not queued, and it is
   * acknowledged. The caller counts it (`dropped{internal_error}`) and logs it.
   */
  onDeliveryError(topic: string, error: unknown): void;
  /**
   * After a reconnect that resumed the session, the broker redelivers every message it
   * had not seen acknowledged; `isStale(ack)` tells which queued ones those are.
   */
  onSessionResumed?(isStale: (ack: Ack) => boolean): void;
}

/** A running MQTT source. */
export interface MqttSource {
  readonly connected: boolean;
  readonly subscribed: boolean;
  readonly client: MqttClient;
  /** Stop taking messages: later ones are left unacknowledged for redelivery. */
  stopReading(): void;
  /** Disconnects cleanly (after the final acks were sent). */
  close(): Promise<void>;
}

const RECONNECT_MIN_MS = 500;
/** MQTT 5 DISCONNECT reason "Session taken over". */
const SESSION_TAKEN_OVER = 0x8e;
/** So many closes without a reason within the window suggest a client id clash. */
const SILENT_CLOSES = 3;
const SILENT_CLOSE_WINDOW_MS = 60_000;

function noop(): void {}
const RECONNECT_MAX_MS = 30_000;

/** Connects and subscribes; rejects with BROKER_UNREACHABLE if the first connect fails. */
export async function startMqttSource(opts: MqttSourceOptions): Promise<MqttSource> {
  const { log } = opts;
  const tlsSettings = opts.tls ?? {};
  const tls = await resolveMqttTls(opts.url, tlsSettings);
  if (tlsSettings.insecure) log.warn(INSECURE_WARNING);
  let connections = 0;
  let subscribed = false;
  let stopping = false;
  /** Messages held back on a full queue (0 or 1: the packet loop waits on each). */
  let holding = 0;
  const qos0WhenFull = opts.qos0WhenFull ?? "pause";
  // Each ack remembers the connection it arrived on, as a property of the function (one
  // hidden class for all acks; no per-message WeakMap entry for the GC to trace). The
  // connection is MQTT.js's stream object: `client.stream` is replaced when a
  // (re)connect starts, before any packet of the new connection is read, and MQTT.js
  // drops packets still queued from a superseded connection. A counter bumped in the
  // `connect` event would not do: MQTT.js hands over PUBLISH packets that arrive right
  // behind the CONNACK before it emits `connect` (it first replays its outgoing store),
  // so they would be tagged with the previous connection and their acks dropped as
  // stale: never acknowledged, redelivered to the next process (issue 10).
  type Stream = MqttClient["stream"];
  type TaggedAck = Ack & { stream?: Stream };

  const clientOptions: IClientOptions = {
    clientId: opts.clientId,
    username: opts.username,
    password: opts.password,
    protocolVersion: opts.protocolVersion,
    clean: false,
    keepalive: opts.keepaliveSec,
    reconnectPeriod: RECONNECT_MIN_MS,
    connectTimeout: opts.connectTimeoutMs,
    // Hooks must be in place before the connection exists: a resumed session's backlog
    // can arrive before the `connect` event. So: manualConnect, set hooks, connect.
    manualConnect: true,
    resubscribe: false,
    // MQTT.js logs through `debug` several times per packet; even disabled, that is a
    // measurable share of the receive path (docs/performance.md).
    log: noop,
    properties: opts.protocolVersion === 5
      ? { sessionExpiryInterval: opts.sessionExpirySec, receiveMaximum: opts.receiveMaximum }
      : undefined,
    ...tls,
  };
  const client = mqtt.connect(opts.url, clientOptions);
  const pubacks = new PubackWriter(client);

  // Keep-alive with a paused socket (issue 15). MQTT.js drops the connection when no
  // PINGRESP arrives within 1.5 keep-alive periods, but a PINGRESP is read in order, behind
  // every PUBLISH the broker sent before it: while we hold messages back, the broker's
  // backlog in the socket delays it, and a reconnect would lose the QoS 0 messages the
  // broker had in flight (measured: 26% of 1.5M at 50k/s offered). So a connection that
  // delivered a message within the last keep-alive period, or that we are holding back
  // ourselves, is alive: ping again (the broker needs a packet from us within 1.5 periods)
  // and wait another round. A broker that is really gone still fails the socket's writes.
  let lastPublishAt = 0;
  const keepaliveTimeout = client.onKeepaliveTimeout.bind(client);
  client.onKeepaliveTimeout = () => {
    const alive = holding > 0 || Date.now() - lastPublishAt < opts.keepaliveSec * 1000;
    if (!alive || !client.connected || !client.keepaliveManager) return keepaliveTimeout();
    client.sendPing();
    client.keepaliveManager.reschedule();
  };

  client.handleMessage = (packet: IPublishPacket, callback: (error?: Error) => void) => {
    lastPublishAt = Date.now();
    let inbound: Inbound;
    let ack: TaggedAck | null = null;
    let delivered: boolean;
    try {
      const payload = packet.payload;
      inbound = {
        topic: packet.topic,
        payload: typeof payload === "string" ? Buffer.from(payload) : payload,
        qos: packet.qos,
        retain: packet.retain,
        receivedAtUs: nowUs(),
      };
      if (stopping) {
        // QoS 1/2: not acknowledged, so the broker keeps it for our next session.
        if (packet.qos === 0) opts.onDrop(inbound, "shutdown");
        callback(packet.qos > 0 ? DEFER_ACK : undefined);
        return;
      }
      if (packet.qos > 0) {
        const stream = client.stream;
        // QoS 1 needs only the packet id: the closure must not keep the packet (and its
        // payload) alive longer than the queue does.
        const messageId = packet.messageId!;
        ack = packet.qos === 1
          ? () => {
            if (stream === client.stream && client.connected) pubacks.ack(messageId);
          }
          : () => {
            if (stream === client.stream && client.connected) sendDeferredAck(client, packet);
          };
        ack.stream = stream;
      }
      delivered = opts.deliver(inbound, ack);
    } catch (error) {
      deliveryFailed(packet, callback, error);
      return;
    }
    if (delivered) {
      callback(ack ? DEFER_ACK : undefined);
      return;
    }
    if (!ack && qos0WhenFull === "drop") {
      opts.onDrop(inbound, "queue_full");
      callback();
      return;
    }
    holdUntilRoom(packet, inbound, ack, callback);
  };

  /**
   * Back-pressure (issue 15): the queue is full, so hold MQTT.js's packet loop and stop
   * reading the socket until there is room, QoS 0 included (unless `qos0WhenFull` is
   * `drop`). The kernel's receive buffer fills, TCP's window closes, and the backlog stays
   * at the broker, which holds it or drops it by its own limits, whatever Receive Maximum
   * it honours. Holding the loop alone also stops the reading, but only once MQTT.js's
   * pipe from the socket has filled its stream buffers: test/backpressure_test.ts read
   * ~180 KB past a full queue that way, ~65-90 KB with the explicit pause.
   */
  const holdUntilRoom = (
    packet: IPublishPacket,
    inbound: Inbound,
    ack: TaggedAck | null,
    callback: (error?: Error) => void,
  ) => {
    const stream = client.stream;
    stream.pause();
    holding++;
    (async () => {
      let delivered = false;
      while (!stopping && !(delivered = opts.deliver(inbound, ack))) await opts.waitForRoom();
      if (!delivered && !ack) opts.onDrop(inbound, "shutdown");
      callback(ack ? DEFER_ACK : undefined);
    })().catch((error) => deliveryFailed(packet, callback, error)).finally(() => {
      holding--;
      // MQTT.js's pipe resumes the socket too once its parser has caught up; resuming a
      // superseded (destroyed) stream is harmless.
      if (holding === 0) stream.resume();
    });
  };

  /**
   * The last guard: a message the delivery path threw on is acknowledged now (calling
   * back without an error makes MQTT.js send PUBACK/PUBCOMP) so the broker does not send
   * it again to fail again, and reported.
   */
  const deliveryFailed = (
    packet: IPublishPacket,
    callback: (error?: Error) => void,
    error: unknown,
  ) => {
    try {
      opts.onDeliveryError(String(packet.topic), error);
    } catch {
      // Reporting must not be what stops the packet loop.
    }
    callback();
  };

  /** One clear line when the broker refuses our subscriptions at SUBACK. */
  const subscriptionRefused = (topics: string[], reasonCodes?: number[], reason?: string) => {
    if (opts.sharedGroup) {
      log.error(
        `broker refused the shared subscription of group "${opts.sharedGroup}": it does not ` +
          "support shared subscriptions ($share/..., MQTT 5) or does not allow them to this " +
          "client; use a broker that does (Mosquitto 2, EMQX, HiveMQ, VerneMQ) and check its " +
          "ACLs, or run one instance without --shared-group",
        { sharedGroup: opts.sharedGroup, topics, reasonCodes, reason, clientId: opts.clientId },
      );
    } else {
      log.error("broker refused subscriptions; check the broker's ACLs for this client", {
        topics,
        reasonCodes,
        reason,
        clientId: opts.clientId,
      });
    }
  };

  // A broker that does not say why it closes a connection (MQTT 3.1.1; Mosquitto before
  // 2.0.15 on MQTT 5) closes it without a DISCONNECT when another client takes the
  // session over. Closes without a reason or a socket error, again and again, are that.
  let connectionUp = false;
  let toldWhy = false;
  let socketFailed = false;
  let silentCloses: number[] = [];
  let suspectedAt = -Infinity;
  const noteSilentClose = () => {
    const now = Date.now();
    silentCloses = silentCloses.filter((t) => now - t < SILENT_CLOSE_WINDOW_MS);
    silentCloses.push(now);
    if (silentCloses.length < SILENT_CLOSES || now - suspectedAt < SILENT_CLOSE_WINDOW_MS) return;
    suspectedAt = now;
    log.error(
      `the broker closed this connection ${silentCloses.length} times within ` +
        `${SILENT_CLOSE_WINDOW_MS / 1000} s without giving a reason: most likely another ` +
        `client uses client id "${opts.clientId}" and the two take the session from each ` +
        "other in turn; give each serve its own --client-id (MQTT_CLIENT_ID)",
      { clientId: opts.clientId, closes: silentCloses.length },
    );
  };

  let reconnectDelay = RECONNECT_MIN_MS;
  let lastError = "";
  client.on("connect", (connack) => {
    connectionUp = true;
    toldWhy = false;
    socketFailed = false;
    const resumed = connack.sessionPresent;
    connections++;
    reconnectDelay = RECONNECT_MIN_MS;
    client.options.reconnectPeriod = reconnectDelay;
    log.info("connected to broker", { url: redactUrl(opts.url), sessionPresent: resumed });
    if (connections > 1 && resumed) {
      const current = client.stream;
      opts.onSessionResumed?.((ack) => ((ack as TaggedAck).stream ?? current) !== current);
    }
    if (resumed && subscribed) return; // the broker kept our subscriptions
    const filters = opts.filters.map((f) =>
      opts.sharedGroup ? `$share/${opts.sharedGroup}/${f}` : f
    );
    client.subscribe(filters, { qos: opts.qos }, (error, granted) => {
      // MQTT 5: MQTT.js reports a SUBACK reason code >= 0x80 as an error ("Subscribe
      // error: Not authorized"); MQTT 3.1.1: as granted QoS 128.
      const refused = (granted ?? []).filter((g) => g.qos === 128 || g.qos > 2);
      if (error && !/^Subscribe error/.test(error.message)) {
        log.error("subscribe failed", { error: error.message });
        return;
      }
      if (error || refused.length > 0) {
        if (refused.length > 0) {
          subscriptionRefused(refused.map((g) => g.topic), refused.map((g) => g.qos));
        } else subscriptionRefused(filters, undefined, error!.message);
        return;
      }
      subscribed = true;
      log.info("subscribed", { filters, qos: opts.qos });
    });
  });
  // MQTT 5: the broker says why it ends the connection (§3.14.2.1). 0x8E: another
  // connection with our client id took the session; without this line the only trace was
  // "broker connection lost", once per take-over, forever.
  client.on("disconnect", (packet) => {
    toldWhy = true;
    const reasonCode = packet.reasonCode ?? 0;
    const reason = packet.properties?.reasonString;
    if (reasonCode === SESSION_TAKEN_OVER) {
      log.error(
        `another client connected with client id "${opts.clientId}" and took over this ` +
          "session (MQTT reason 0x8E); two processes with one client id take the session " +
          "(and its backlog) from each other in turn: give each serve its own --client-id " +
          "(MQTT_CLIENT_ID)",
        { clientId: opts.clientId, reasonCode, reason },
      );
    } else {
      log.warn("broker disconnected us", {
        clientId: opts.clientId,
        reasonCode: `0x${reasonCode.toString(16).padStart(2, "0")}`,
        reason,
      });
    }
  });
  client.on("close", () => {
    if (stopping) return;
    if (connectionUp && !toldWhy && !socketFailed) noteSilentClose();
    connectionUp = false;
    if (subscribed || connections > 0) log.warn("broker connection lost; reconnecting");
    // Exponential backoff: MQTT.js waits `reconnectPeriod` before each attempt.
    reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_MS);
    client.options.reconnectPeriod = reconnectDelay;
  });
  client.on("error", (error) => {
    socketFailed = true;
    if (error.message !== lastError) log.warn("broker error", { error: error.message });
    lastError = error.message;
  });

  await new Promise<void>((resolve, reject) => {
    const onConnect = () => {
      cleanup();
      resolve();
    };
    const onError = (error: Error) => {
      cleanup();
      stopping = true;
      // MQTT.js (5.16) keeps reconnecting after end() while a reconnect period is set.
      client.options.reconnectPeriod = 0;
      client.end(true);
      reject(
        new FeedlineError(
          "BROKER_UNREACHABLE",
          connectFailureLine(redactUrl(opts.url), error, tlsSettings),
          { cause: error },
        ),
      );
    };
    const timer = setTimeout(
      () => onError(new Error(`no answer within ${opts.connectTimeoutMs} ms`)),
      opts.connectTimeoutMs,
    );
    const cleanup = () => {
      clearTimeout(timer);
      client.off("connect", onConnect);
      client.off("error", onError);
    };
    client.on("connect", onConnect);
    client.on("error", onError);
    client.connect();
  });

  return {
    get connected() {
      return client.connected;
    },
    get subscribed() {
      return subscribed && client.connected;
    },
    client,
    stopReading() {
      stopping = true;
    },
    close() {
      stopping = true;
      client.options.reconnectPeriod = 0;
      return new Promise<void>((resolve) => client.end(false, {}, () => resolve()));
    },
  };
}

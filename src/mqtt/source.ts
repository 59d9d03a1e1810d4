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
 *
 * Here: delivery, back-pressure and acks (`receive`, `ackOf`, the `customHandleAcks`
 * hook). Beside it, each in a module of its own: the first connect (connect.ts),
 * subscribing (subscribe.ts), the keep-alive patch (keepalive.ts), reconnect backoff
 * (reconnect.ts), take-over diagnostics (takeover.ts), what a reconnect found
 * (session_report.ts), MQTT.js's ack internals (ack.ts), the held messages
 * (held_copies.ts) and the parser of incoming packets (publish_parser.ts).
 */
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from "mqtt";
import { Buffer } from "node:buffer";
import { nowUs } from "../clock.ts";
import type { Logger } from "../log.ts";
import { redactUrl } from "../log.ts";
import type { Ack, Inbound, Qos } from "../core/message.ts";
import {
  acceptQos2BeyondReceiveMaximum,
  DEFER_ACK,
  forgetQos2,
  holdQos2Receipts,
  PubackWriter,
  sendDeferredAck,
} from "./ack.ts";
import { awaitFirstConnect } from "./connect.ts";
import { type Held, HeldCopies } from "./held_copies.ts";
import { keepAliveWhileBusy } from "./keepalive.ts";
import {
  installPublishParser,
  type OversizedPacket,
  type OversizeSettings,
} from "./publish_parser.ts";
import { RECONNECT_MIN_MS, reconnectWithBackoff } from "./reconnect.ts";
import { createSessionReport } from "./session_report.ts";
import { subscribeFilters } from "./subscribe.ts";
import { watchForTakeovers } from "./takeover.ts";
import { INSECURE_WARNING, type MqttTlsSettings, resolveMqttTls } from "./tls.ts";

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
   * The broker sent again a message serve holds or has written (after a reconnect, with
   * its packet id, topic and payload; src/mqtt/held_copies.ts): this copy is not
   * delivered, the original is written once, and the caller counts the copy
   * (`discarded{redelivered}`).
   */
  onRedelivered(inbound: Inbound): void;
  /**
   * A reconnect found no session where one was expected: what the broker held for us,
   * and what was published while we were away, is lost. The source has logged it.
   */
  onSessionLost?(): void;
  /** The broker granted the subscriptions (after each (re)subscribe). */
  onSubscribed?(): void;
  /**
   * A PUBLISH with a payload over `above` bytes (rejected as too_large anyway) is read
   * keeping only its first `keep` (src/mqtt/publish_parser.ts); absent: every payload whole.
   */
  oversize?: OversizeSettings;
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

function noop(): void {}

// PUBLISH packets read without mqtt-packet's per-packet overhead (src/mqtt/publish_parser.ts).
installPublishParser();

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
  // Each held message remembers the connection its ack goes out on (src/mqtt/held_copies.ts).
  // The connection is MQTT.js's stream object: `client.stream` is replaced when a
  // (re)connect starts, before any packet of the new connection is read, and MQTT.js
  // drops packets still queued from a superseded connection. A counter bumped in the
  // `connect` event would not do: MQTT.js hands over PUBLISH packets that arrive right
  // behind the CONNACK before it emits `connect` (it first replays its outgoing store),
  // so they would be tagged with the previous connection and their acks dropped as
  // stale: never acknowledged, redelivered to the next process (issue 10).
  type Stream = MqttClient["stream"];
  const heldCopies = new HeldCopies<Stream>();

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
    // MQTT.js hands its options to the parser (src/mqtt/publish_parser.ts).
    ...(opts.oversize ? { oversize: opts.oversize } : {}),
  } as IClientOptions;
  const client = mqtt.connect(opts.url, clientOptions);
  const pubacks = new PubackWriter(client);

  // A broker that sends more QoS 2 messages than our Receive Maximum (Mosquitto 2.0.11
  // counts them out before PUBCOMP) must not make MQTT.js drop the connection: the backlog
  // would come back and loop (issue 20). Said once; the queues still bound memory.
  let toldQos2Excess = false;
  acceptQos2BeyondReceiveMaximum(client, (inFlight, receiveMaximum) => {
    if (toldQos2Excess) return;
    toldQos2Excess = true;
    log.warn(
      `the broker sent more unacknowledged QoS 2 messages (${inFlight}) than the Receive ` +
        `Maximum serve announced (${receiveMaximum}); serve accepts them instead of ` +
        "disconnecting, and its queues still bound memory (docs/delivery.md)",
      { inFlight, receiveMaximum },
    );
  });

  // Keep-alive with a paused socket (src/mqtt/keepalive.ts says why).
  const traffic = keepAliveWhileBusy(client, opts.keepaliveSec, () => holding > 0);

  /**
   * The acknowledgement of a held message, sent once its batch committed: on the
   * connection it is tied to (its own, or that of the copy the broker sent again). When
   * that connection is gone, the acknowledgement is void: the message stays noted as
   * written, and a copy the broker sends again is acknowledged at once (docs/delivery.md,
   * "Held messages across a reconnect").
   */
  const ackOf = (held: Held<Stream>): Ack => () => {
    if (held.connection === client.stream && client.connected) {
      heldCopies.release(held);
      if (held.qos === 1) pubacks.ack(held.messageId);
      else sendDeferredAck(client, held);
      return;
    }
    if (held.qos === 2) forgetQos2(client, held.packet as IPublishPacket);
    heldCopies.markWritten(held);
  };

  /**
   * Takes one PUBLISH: QoS 0 and 1 from `handleMessage`, QoS 2 from its PUBLISH (below).
   * Calls back with DEFER_ACK when the acknowledgement waits for the commit, without an
   * error when it is due now.
   */
  const receive = (packet: IPublishPacket, callback: (error?: Error) => void) => {
    traffic.delivered();
    let inbound: Inbound;
    let ack: Ack | null = null;
    let held: Held<Stream> | null = null;
    let delivered: boolean;
    try {
      const payload = packet.payload;
      const { payloadSize, payloadDigest } = packet as OversizedPacket;
      inbound = {
        topic: packet.topic,
        payload: typeof payload === "string" ? Buffer.from(payload) : payload,
        qos: packet.qos,
        retain: packet.retain,
        receivedAtUs: nowUs(),
      };
      // Only an oversized PUBLISH has it: no spread in the literal every message builds.
      if (payloadSize !== undefined) inbound.payloadSize = payloadSize;
      if (stopping) {
        // QoS 1/2: not acknowledged, so the broker keeps it for our next session.
        if (packet.qos === 0) opts.onDrop(inbound, "shutdown");
        callback(packet.qos > 0 ? DEFER_ACK : undefined);
        return;
      }
      if (packet.qos > 0) {
        const stream = client.stream;
        const messageId = packet.messageId!;
        const { topic, payload } = inbound;
        const original = heldCopies.copyOf(
          messageId,
          topic,
          payload,
          packet.dup,
          stream,
          payloadDigest,
        );
        if (original) {
          // Sent again after a reconnect: keep one of the two, the original.
          opts.onRedelivered(inbound);
          if (original.written) {
            heldCopies.release(original);
            callback();
          } else {
            heldCopies.moveTo(original, stream, original.qos === 2 ? packet : null);
            callback(DEFER_ACK);
          }
          return;
        }
        // QoS 1 needs only the packet id: the note must not keep the packet alive longer
        // than the queue does. QoS 2 keeps it, for `forgetQos2`.
        const qos2 = packet.qos === 2;
        held = heldCopies.hold(
          messageId,
          topic,
          payload,
          qos2 ? 2 : 1,
          stream,
          qos2 ? packet : null,
          payloadDigest,
        );
        ack = ackOf(held);
      }
      delivered = opts.deliver(inbound, ack);
    } catch (error) {
      if (held) heldCopies.release(held);
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
    holdUntilRoom(packet, inbound, ack, held, callback);
  };

  client.handleMessage = (packet: IPublishPacket, callback: (error?: Error) => void) => {
    // QoS 2 comes here at PUBREL: taken at its PUBLISH, PUBREC'd after its commit; calling
    // back lets MQTT.js send PUBCOMP.
    if (packet.qos === 2) return callback();
    receive(packet, callback);
  };

  // QoS 2 is taken at its PUBLISH, and its PUBREC waits for the commit as a PUBACK does
  // (src/mqtt/ack.ts, docs/delivery.md "QoS 2"). MQTT.js asks this hook before it
  // answers a PUBLISH; QoS 1 goes on to `handleMessage`.
  const withoutReceipt = holdQos2Receipts(client);
  client.options.customHandleAcks = (_topic, _message, packet: IPublishPacket, done) => {
    if (packet.qos !== 2) return done(0);
    receive(packet, (error) => {
      if (error === DEFER_ACK) withoutReceipt(packet.messageId!, () => done(0));
      else done(0);
    });
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
    ack: Ack | null,
    held: Held<Stream> | null,
    callback: (error?: Error) => void,
  ) => {
    const stream = client.stream;
    stream.pause();
    holding++;
    (async () => {
      let delivered = false;
      while (!stopping && !(delivered = opts.deliver(inbound, ack))) await opts.waitForRoom();
      if (!delivered && !ack) opts.onDrop(inbound, "shutdown");
      if (!delivered && held) heldCopies.release(held);
      callback(ack ? DEFER_ACK : undefined);
    })().catch((error) => {
      if (held) heldCopies.release(held);
      deliveryFailed(packet, callback, error);
    }).finally(() => {
      holding--;
      // MQTT.js's pipe resumes the socket too once its parser has caught up; resuming a
      // superseded (destroyed) stream is harmless.
      if (holding === 0) stream.resume();
    });
  };

  /**
   * The last guard: a message the delivery path threw on is acknowledged now (calling
   * back without an error makes MQTT.js send PUBACK/PUBREC) so the broker does not send
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

  const session = createSessionReport({
    heldCopies,
    log,
    clientId: opts.clientId,
    protocolVersion: opts.protocolVersion,
    sessionExpirySec: opts.sessionExpirySec,
    onSessionLost: opts.onSessionLost,
  });
  const isStopping = () => stopping;
  watchForTakeovers(client, opts.clientId, log, isStopping);

  let connectionUp = false;
  let lastError = "";
  client.on("connect", (connack) => {
    connectionUp = true;
    const resumed = connack.sessionPresent;
    connections++;
    log.info("connected to broker", { url: redactUrl(opts.url), sessionPresent: resumed });
    if (connections > 1) session.reconnected(resumed, client.stream);
    if (resumed && subscribed) return; // the broker kept our subscriptions
    subscribeFilters(client, { ...opts, log }, () => {
      subscribed = true;
      opts.onSubscribed?.();
    });
  });
  client.on("close", () => {
    if (stopping) return;
    if (connectionUp) session.connectionLost();
    connectionUp = false;
    if (subscribed || connections > 0) log.warn("broker connection lost; reconnecting");
  });
  client.on("error", (error) => {
    if (error.message !== lastError) log.warn("broker error", { error: error.message });
    lastError = error.message;
  });
  reconnectWithBackoff(client, isStopping);

  await awaitFirstConnect(client, {
    url: opts.url,
    timeoutMs: opts.connectTimeoutMs,
    tls: tlsSettings,
    connect: true, // manualConnect: the hooks above are in place
    onGiveUp: () => stopping = true,
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

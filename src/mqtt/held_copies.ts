/**
 * The messages serve holds unacknowledged, by packet id, so that a copy the broker sends
 * again after a reconnect is recognised (docs/delivery.md, "Held messages across a
 * reconnect").
 *
 * On a resumed session the broker resends every PUBLISH it has not seen acknowledged with
 * its original packet id and DUP set (MQTT 3.1.1 and MQTT 5, §4.4). A copy is therefore a
 * PUBLISH of a later connection with DUP set and the packet id, topic and payload of a
 * message held from an earlier one. serve then keeps one of the two: the original, queued
 * with its receive stamp (so its key is unchanged), its acknowledgement moved to the
 * copy's connection; or, when the original was already written but its acknowledgement
 * had no connection left to go to, the copy is acknowledged at once. A PUBLISH without
 * DUP is never taken for a copy: a broker restored from an older state hands out the same
 * packet ids again, to new messages. A held message whose copy never comes (the broker
 * lost it) is simply written.
 *
 * Memory: at most one entry per packet id (65,535), each for a message not acknowledged:
 * in the queues, in the batch, or written after its connection was lost, until the broker
 * sends it again, gives its packet id to another message, or has lost the session. The
 * payload is the one the queued message holds anyway: of an oversized one, only its head,
 * with the whole payload's digest beside (src/mqtt/publish_parser.ts).
 */
import { Buffer } from "node:buffer";

/** A message handed to the pipeline and not yet acknowledged. */
export interface Held<C> {
  readonly messageId: number;
  readonly topic: string;
  readonly payload: Uint8Array;
  /** An oversized payload's SHA-256, when `payload` is only its head. */
  readonly digest: string | undefined;
  readonly qos: 1 | 2;
  /** The connection its acknowledgement goes out on: its own, or its copy's. */
  connection: C;
  /** QoS 2: the client library's packet of the copy the acknowledgement is for. */
  packet: unknown;
  /** Written, but its acknowledgement had no connection to go to. */
  written: boolean;
}

/** Messages from earlier connections, still held or written without acknowledgement. */
export interface EarlierCounts {
  held: number;
  written: number;
}

const PACKET_IDS = 65_536;

/** The held messages of one client session, by packet id. */
export class HeldCopies<C> {
  #byId: (Held<C> | undefined)[] = new Array(PACKET_IDS);

  /** Takes note of a message handed over on `connection`. */
  hold(
    messageId: number,
    topic: string,
    payload: Uint8Array,
    qos: 1 | 2,
    connection: C,
    packet: unknown,
    digest?: string,
  ): Held<C> {
    const held: Held<C> = {
      messageId,
      topic,
      payload,
      digest,
      qos,
      connection,
      packet,
      written: false,
    };
    this.#byId[messageId] = held;
    return held;
  }

  /**
   * The held message of an earlier connection that this PUBLISH is a copy of, or null. A
   * PUBLISH that reuses the packet id of an earlier message for another one tells that the
   * broker no longer has that message in flight: it is forgotten here (and written).
   */
  copyOf(
    messageId: number,
    topic: string,
    payload: Uint8Array,
    dup: boolean,
    connection: C,
    digest?: string,
  ): Held<C> | null {
    const held = this.#byId[messageId];
    if (!held || held.connection === connection) return null;
    if (
      dup && held.topic === topic && held.digest === digest && sameBytes(held.payload, payload)
    ) return held;
    this.#byId[messageId] = undefined;
    return null;
  }

  /** The copy's connection now carries the original's acknowledgement. */
  moveTo(held: Held<C>, connection: C, packet: unknown): void {
    held.connection = connection;
    held.packet = packet;
  }

  /** Acknowledged, or given up: forgotten. */
  release(held: Held<C>): void {
    if (this.#byId[held.messageId] === held) this.#byId[held.messageId] = undefined;
  }

  /** Written, its acknowledgement void: kept to absorb the copy the broker may send. */
  markWritten(held: Held<C>): void {
    if (this.#byId[held.messageId] === held) held.written = true;
  }

  /** How many messages of connections other than `connection` are remembered. */
  countEarlier(connection: C): EarlierCounts {
    return this.#earlier(connection, false);
  }

  /** The session is gone, and with it every copy the broker could send: forgets them. */
  forgetEarlier(connection: C): EarlierCounts {
    return this.#earlier(connection, true);
  }

  #earlier(connection: C, forget: boolean): EarlierCounts {
    const counts = { held: 0, written: 0 };
    const byId = this.#byId;
    for (let id = 0; id < PACKET_IDS; id++) {
      const held = byId[id];
      if (!held || held.connection === connection) continue;
      if (held.written) counts.written++;
      else counts.held++;
      if (forget) byId[id] = undefined;
    }
    return counts;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.compare(a, b) === 0;
}

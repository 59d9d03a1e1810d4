/**
 * The intake: where a message from a source enters the pipeline (docs/architecture.md,
 * "The data path", step 3). It decodes the message (a decoder failure becomes an
 * `internal_error` reject, never an exception: src/core/decode.ts `neverThrowing`), applies the drop policy, and counts what
 * arrives in the accounting (src/ingest/accounting.ts).
 *
 * Drop policy: messages are never dropped here. When a queue is full `deliver` answers
 * false and the source holds the message back and stops reading its socket until there
 * is room (`waitForRoom`), so the broker keeps the backlog. Only with `serve
 * --qos0-when-full drop` does the source drop a QoS 0 message that found the data queue
 * full (`onDrop`, counted as `queue_full`). A QoS 0 reading is not even decoded while the
 * data queue is full: under overload it would be decoded again and again.
 *
 * The returned object has the shape of the MQTT source's callbacks (src/mqtt/source.ts),
 * which knows nothing of queues or SQL.
 */
import {
  decode,
  type DecodeOptions,
  type Decoder,
  lastReceiveOffsetUs,
  neverThrowing,
} from "../core/decode.ts";
import { reserveStampsThrough } from "../clock.ts";
import type { Ack, Decoded, DecodedMessage, Inbound } from "../core/message.ts";
import { rejectKeepsBytes } from "./write/rejects.ts";
import type { Accounting } from "./accounting.ts";
import type { Pipeline } from "./pipeline.ts";

/** What the intake needs. */
export interface IntakeOptions {
  pipeline: Pipeline;
  accounting: Accounting;
  decode: DecodeOptions;
  /** The decoder; tests replace it with one that throws (guarded like `decode`). */
  decoder?: Decoder;
  /**
   * `--reject-payload-cap`: a QoS 0 message rejected or skipped at decode is queued with
   * only the payload bytes its reject row keeps (src/ingest/write/rejects.ts
   * `rejectKeepsBytes`). Absent (`--capture` on, which writes messages whole): kept whole.
   */
  rejectPayloadCap?: number;
  /** A QoS 0 message dropped on a full queue (the capture file keeps it for replay). */
  onQueueFull?(inbound: Inbound): void;
  /** Feedline failed on a message before it was queued (for the flood log). */
  onInternalError?(topic: string, error: unknown): void;
}

/** The callbacks a source calls; see src/mqtt/source.ts for when. */
export interface Intake {
  deliver(inbound: Inbound, ack: Ack | null): boolean;
  waitForRoom(): Promise<void>;
  onDrop(inbound: Inbound, reason: "queue_full" | "shutdown"): void;
  onDeliveryError(topic: string, error: unknown): void;
  onRedelivered(inbound: Inbound): void;
}

/**
 * Decodes a received message (never throws: `decoder` is guarded, src/core/decode.ts
 * `neverThrowing`). A message whose readings take stamps after its receive time
 * (src/core/decode.ts `spreadReceiveStamps`) moves the receive clock past them here,
 * before the source stamps the next message.
 */
export function decodeReceived(decoder: Decoder, inbound: Inbound, opts: DecodeOptions): Decoded {
  const decoded = decoder(inbound, opts);
  const offset = lastReceiveOffsetUs(decoded);
  if (offset > 0) reserveStampsThrough(inbound.receivedAtUs + offset);
  return decoded;
}

/** Creates the intake of one pipeline. */
export function createIntake(opts: IntakeOptions): Intake {
  const { pipeline, accounting } = opts;
  const decoder = opts.decoder ? neverThrowing(opts.decoder) : decode;
  const router = opts.decode.router;
  return {
    deliver(inbound, ack) {
      if (!ack && pipeline.isFull("readings") && router.match(inbound.topic)?.kind !== "status") {
        return false; // the source holds it (or, under the drop policy, calls onDrop)
      }
      const decoded = decodeReceived(decoder, inbound, opts.decode);
      const pending = keptOf(inbound, decoded, ack ? undefined : opts.rejectPayloadCap);
      if (!pipeline.offer(pending, ack)) return false;
      accounting.received();
      return true;
    },
    waitForRoom: () => pipeline.waitForRoom(),
    onDrop(inbound, reason) {
      if (reason === "queue_full") opts.onQueueFull?.(inbound);
      accounting.received();
      accounting.dropped(reason);
    },
    onDeliveryError(topic, error) {
      accounting.received();
      accounting.dropped("internal_error");
      opts.onInternalError?.(topic, error);
    },
    onRedelivered() {
      // A copy of a message already held or written: that one ends in the books.
      accounting.received();
      accounting.discarded("redelivered");
    },
  };
}

/**
 * The message as queued: a reject or skip decided at decode keeps only the payload bytes
 * its row stores (a skip: none), copied, so that the received buffer can go. A QoS 1/2
 * message is not trimmed (`cap` undefined): the source's held copy keeps the payload to
 * recognise a redelivered copy (src/mqtt/held_copies.ts), so trimming would free nothing.
 */
function keptOf(inbound: Inbound, decoded: Decoded, cap: number | undefined): DecodedMessage {
  if (cap === undefined || (decoded.kind !== "reject" && decoded.kind !== "skip")) {
    return { inbound, decoded };
  }
  const keep = decoded.kind === "skip" ? 0 : rejectKeepsBytes(decoded.reason, cap);
  const { payload } = inbound;
  if (payload.byteLength <= keep) return { inbound, decoded };
  const head = new Uint8Array(payload.subarray(0, keep));
  return { inbound: { ...inbound, payload: head, payloadSize: payload.byteLength }, decoded };
}

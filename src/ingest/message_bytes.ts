/**
 * What a queued message costs, in the bytes the queue and batch bounds count
 * (docs/performance.md, "Memory budget"): its payload and topic, plus the objects
 * around them. The constants are measured (`deno run -A --v8-flags=--expose-gc
 * bench/queue_memory.ts`: ~750 bytes of heap per small one-reading message, payload and
 * topic included) and rounded up, so that the count bound decides for small messages and
 * the byte bound for large ones.
 */
import type { DecodedMessage } from "../core/message.ts";

/** The inbound, decoded, queue item and ack objects of one message. */
export const MESSAGE_OVERHEAD_BYTES = 1024;
/** One decoded reading (or Sparkplug metric): its object and feed key. */
export const READING_OVERHEAD_BYTES = 128;

/**
 * Bytes counted for a queued message: the payload it holds, which is what its held copy
 * holds too (src/mqtt/held_copies.ts): whole, or the head of a payload trimmed for its
 * reject row (src/ingest/intake.ts) or read as oversized (src/mqtt/publish_parser.ts).
 */
export function messageBytes(message: DecodedMessage): number {
  const { inbound, decoded } = message;
  const payload = inbound.payload.byteLength;
  let readings = 0;
  if (decoded.kind === "readings") readings = decoded.readings.length + decoded.rejects.length;
  else if (decoded.kind === "sparkplug") readings = decoded.sparkplug.metrics.length;
  // Topics are JS strings: one byte per character when Latin-1, two otherwise; counted as one.
  return MESSAGE_OVERHEAD_BYTES + payload + inbound.topic.length +
    readings * READING_OVERHEAD_BYTES;
}

/**
 * Bytes per queued message: fills a bounded queue with N decoded messages of typical
 * shape (topic of a UUID user, small JSON payload with a timestamp, as MQTT.js hands
 * them over in a Buffer) and reports the growth of heap plus external (ArrayBuffer) memory per message,
 * beside what the queue's byte bound counts for it (src/ingest/message_bytes.ts): the counted
 * bytes should not fall below the measured ones.
 *
 *   deno run -A --v8-flags=--expose-gc bench/queue_memory.ts [N]
 */
import { Buffer } from "node:buffer";
import { nowUs } from "../src/clock.ts";
import { decode } from "../src/core/decode.ts";
import type { DecodedMessage } from "../src/core/message.ts";
import type { QueueItem } from "../src/ingest/pipeline.ts";
import { BoundedQueue } from "../src/ingest/queue.ts";
import { messageBytes } from "../src/ingest/message_bytes.ts";
import { compileTopics } from "../src/core/topics.ts";

const count = Number(Deno.args[0] ?? 100_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --v8-flags=--expose-gc");
const opts = {
  router: compileTopics(),
  maxPayloadBytes: 65536,
  maxTextLength: 255,
  maxFutureSkewMs: 300_000,
};
const users = Array.from({ length: 100 }, () => crypto.randomUUID());

function measure(label: string, payload: (i: number) => string, n = count) {
  gc!();
  const before = ((m) => m.heapUsed + m.external)(Deno.memoryUsage());
  const queue = new BoundedQueue<QueueItem>(n);
  let counted = 0;
  for (let i = 0; i < n; i++) {
    const inbound = {
      topic: `${users[i % 100]}/dev${i % 10}/feeds/temp${i % 5}`,
      payload: Buffer.from(payload(i)),
      qos: 1 as const,
      retain: false,
      receivedAtUs: nowUs(),
    };
    const pending: DecodedMessage = { inbound, decoded: decode(inbound, opts) };
    const bytes = messageBytes(pending);
    counted += bytes;
    queue.push({ pending, ack: () => {}, queuedAt: performance.now(), bytes });
  }
  gc!();
  const after = ((m) => m.heapUsed + m.external)(Deno.memoryUsage());
  console.log(
    `${label}: ${Math.round((after - before) / n)} bytes per queued message (${n} messages, ${
      ((after - before) / 1048576).toFixed(1)
    } MiB); counted ${Math.round(counted / n)}`,
  );
  return queue.length;
}

measure("plain number payload", (i) => String(20 + (i % 100) / 10));
measure(
  "JSON payload with ts",
  (i) => JSON.stringify({ value: 20 + (i % 100) / 10, ts: 1767225600000 + i }),
);
measure(
  "60 KB JSON reading",
  (i) => JSON.stringify({ value: i, ts: 1767225600000 + i, pad: "x".repeat(60_000) }),
  Math.min(count, 2000),
);

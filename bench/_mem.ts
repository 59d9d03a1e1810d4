import { decode } from "../src/decode.ts";
import { compileTopics } from "../src/topics.ts";
import { Buffer } from "node:buffer";
const opts = {
  router: compileTopics(),
  maxPayloadBytes: 65536,
  maxTextLength: 255,
  maxFutureSkewMs: 300000,
};
const gc = (globalThis as any).gc;
const u = crypto.randomUUID();
function measure(label: string, make: (i: number) => unknown) {
  gc();
  gc();
  const b = Deno.memoryUsage();
  const items: unknown[] = new Array(100000);
  for (let i = 0; i < 100000; i++) items[i] = make(i);
  gc();
  gc();
  const a = Deno.memoryUsage();
  console.log(
    label.padEnd(30),
    "heap/item",
    ((a.heapUsed - b.heapUsed) / 1e5).toFixed(0),
    "ext/item",
    ((a.external - b.external) / 1e5).toFixed(0),
    "rss",
    (a.rss / 2 ** 20).toFixed(0),
  );
  return items;
}
const topic = (i: number) => `${u}/dev001/feeds/dev001-f${i % 5}`;
const payload = (i: number) => `{"value":${i},"ts":${Date.now() * 1000 + i}}`;
measure("topic string", (i) => topic(i));
measure("Buffer.from payload", (i) => Buffer.from(payload(i)));
measure("Uint8Array payload", (i) => new TextEncoder().encode(payload(i)));
measure(
  "inbound",
  (i) => ({
    topic: topic(i),
    payload: Buffer.from(payload(i)),
    qos: 1,
    retain: false,
    receivedAtUs: Date.now() * 1000 + i,
  }),
);
measure("inbound+decoded", (i) => {
  const inbound = {
    topic: topic(i),
    payload: Buffer.from(payload(i)),
    qos: 1 as const,
    retain: false,
    receivedAtUs: Date.now() * 1000 + i,
  };
  return { inbound, decoded: decode(inbound, opts) };
});
const wm = new WeakMap();
measure("closure+weakmap", (i) => {
  const p = { messageId: i };
  const f = () => p;
  wm.set(f, 1);
  return f;
});
measure("closure", (i) => {
  const p = { messageId: i };
  const f = () => p;
  return f;
});

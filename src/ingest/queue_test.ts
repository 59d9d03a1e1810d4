import assert from "node:assert/strict";
import { BoundedQueue } from "./queue.ts";

Deno.test("BoundedQueue refuses a push when full instead of growing", () => {
  const q = new BoundedQueue<number>(2);
  assert.equal(q.push(1), true);
  assert.equal(q.push(2), true);
  assert.equal(q.full, true);
  assert.equal(q.push(3), false);
  assert.equal(q.length, 2);
});

Deno.test("BoundedQueue takes from the head in order, and frees room", () => {
  const q = new BoundedQueue<number>(3);
  for (const n of [1, 2, 3]) q.push(n);
  assert.equal(q.peek(), 1);
  assert.deepEqual(q.take(2), [1, 2]);
  assert.equal(q.length, 1);
  assert.equal(q.push(4), true);
  assert.deepEqual(q.take(10), [3, 4]);
  assert.equal(q.peek(), undefined);
});

Deno.test("BoundedQueue stays in order across many takes (compaction)", () => {
  const q = new BoundedQueue<number>(5000);
  let next = 0;
  let expected = 0;
  for (let round = 0; round < 50; round++) {
    while (q.push(next)) next++;
    for (const n of q.take(3000)) assert.equal(n, expected++);
  }
  assert.deepEqual(q.take(5000), Array.from({ length: next - expected }, (_, i) => expected + i));
});

Deno.test("BoundedQueue.removeWhere removes matching items and keeps the order of the rest", () => {
  const q = new BoundedQueue<number>(10);
  for (let n = 0; n < 8; n++) q.push(n);
  q.take(2);
  assert.equal(q.removeWhere((n) => n % 2 === 0), 3);
  assert.deepEqual(q.take(10), [3, 5, 7]);
});

Deno.test("BoundedQueue.take stops at the first item `fits` refuses", () => {
  const q = new BoundedQueue<number>(10);
  for (const n of [5, 5, 5, 1]) q.push(n);
  let sum = 0;
  assert.deepEqual(q.take(10, (n) => (sum + n <= 10 ? (sum += n, true) : false)), [5, 5]);
  assert.deepEqual(q.take(10), [5, 1]);
});

Deno.test("BoundedQueue with a byte bound: full at the bound, counts what it holds, frees on take", () => {
  const q = new BoundedQueue<number>(100, { maxBytes: 10, sizeOf: (n) => n });
  assert.equal(q.push(4), true);
  assert.equal(q.push(4), true);
  assert.equal(q.fullBy, null, "8 of 10 bytes");
  assert.equal(q.push(4), true, "not full yet: taken, overshooting by less than one item");
  assert.equal(q.bytes, 12);
  assert.equal(q.fullBy, "bytes");
  assert.equal(q.push(1), false);
  assert.deepEqual(q.take(1), [4]);
  assert.equal(q.bytes, 8);
  assert.equal(q.full, false);
  assert.equal(q.removeWhere((n) => n === 4), 2);
  assert.equal(q.bytes, 0);
  assert.equal(q.push(50), true, "an item larger than the bound passes an empty queue");
  assert.equal(q.fullBy, "bytes");
});

Deno.test("BoundedQueue says which bound is reached: count before bytes", () => {
  const q = new BoundedQueue<number>(2, { maxBytes: 2, sizeOf: (n) => n });
  q.push(1);
  q.push(1);
  assert.equal(q.fullBy, "messages");
});

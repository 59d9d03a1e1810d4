import assert from "node:assert/strict";
import { createRng } from "./prng.ts";

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

Deno.test("createRng() gives the same sequence for the same seed and stream", () => {
  const a = createRng(42, 1);
  const b = createRng(42, 1);
  const seqA = Array.from({ length: 100 }, () => a.next());
  const seqB = Array.from({ length: 100 }, () => b.next());
  assert.deepEqual(seqA, seqB);
});

Deno.test("createRng() gives unrelated sequences for other seeds and other streams", () => {
  const first = (seed: number, stream: number) => {
    const rng = createRng(seed, stream);
    return Array.from({ length: 8 }, () => rng.hex(8)).join("");
  };
  assert.notEqual(first(42, 1), first(43, 1));
  assert.notEqual(first(42, 1), first(42, 2));
});

Deno.test("createRng().uuid() has the version 4 layout and does not repeat", () => {
  const rng = createRng(7);
  const ids = new Set<string>();
  for (let i = 0; i < 10_000; i++) {
    const id = rng.uuid();
    assert.match(id, UUID_V4);
    ids.add(id);
  }
  assert.equal(ids.size, 10_000);
});

Deno.test("createRng() draws floats in [0, 1) and whole numbers in [0, n) about evenly", () => {
  const rng = createRng(3);
  const buckets = new Array(10).fill(0);
  for (let i = 0; i < 100_000; i++) {
    const x = rng.next();
    assert.ok(x >= 0 && x < 1);
    buckets[rng.int(10)]++;
  }
  for (const n of buckets) assert.ok(n > 9_500 && n < 10_500, `bucket holds ${n} of 100000`);
});

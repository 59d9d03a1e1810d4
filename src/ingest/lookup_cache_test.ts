import assert from "node:assert/strict";
import { LookupCache } from "./lookup_cache.ts";

Deno.test("a cached entry is trusted for at most the TTL and at least half of it", () => {
  const cache = new LookupCache<number>({ ttlMs: 1000 });
  cache.set("a", 1, 0);
  assert.equal(cache.get("a", 499), 1);
  cache.set("b", 2, 600); // after the rotation at 500: b is young, a is old
  assert.equal(cache.get("a", 999), 1);
  assert.equal(cache.get("a", 1000), undefined, "a is one TTL old");
  assert.equal(cache.get("b", 1000), 2);
  assert.equal(cache.get("b", 1499), 2);
  assert.equal(cache.get("b", 1500), undefined, "b was set in the epoch two back");
});

Deno.test("a long quiet spell expires everything at once", () => {
  const cache = new LookupCache<number>({ ttlMs: 1000 });
  cache.set("a", 1, 0);
  assert.equal(cache.get("a", 5000), undefined);
  assert.equal(cache.size, 0);
});

Deno.test("the cache holds at most maxEntries and evicts the oldest first", () => {
  const cache = new LookupCache<number>({ ttlMs: 1000, maxEntries: 3 });
  cache.set("a", 1, 0);
  cache.set("b", 2, 0);
  cache.set("c", 3, 600); // a, b old; c young
  cache.set("d", 4, 601); // full: a goes
  assert.equal(cache.size, 3);
  assert.equal(cache.get("a", 602), undefined);
  assert.deepEqual(["b", "c", "d"].map((k) => cache.get(k, 602)), [2, 3, 4]);
  cache.set("c", 30, 603); // an update does not evict
  assert.equal(cache.size, 3);
  assert.equal(cache.get("b", 604), 2);
});

Deno.test("delete and clear bump the version; a set that saw an older version is not kept", () => {
  const cache = new LookupCache<number>({ ttlMs: 1000 });
  const seen = cache.version;
  cache.delete("x");
  cache.set("x", 1, 0, seen);
  assert.equal(cache.get("x", 1), undefined);
  cache.set("x", 1, 0, cache.version);
  assert.equal(cache.get("x", 1), 1);
  cache.clear();
  assert.equal(cache.get("x", 2), undefined);
});

Deno.test("a TTL of 0 caches nothing", () => {
  const cache = new LookupCache<number>({ ttlMs: 0 });
  cache.set("a", 1, 0);
  assert.equal(cache.get("a", 0), undefined);
});

Deno.test("confirmed entries outlive the TTL; when confirmations stop, all go within one TTL of the last", () => {
  const cache = new LookupCache<number>({ ttlMs: 1000 });
  cache.set("a", 1, 0);
  for (const at of [300, 600, 900, 1200, 1500, 1800]) {
    cache.confirm(at);
    assert.equal(cache.get("a", at + 100), 1, `confirmed at ${at}`);
  }
  cache.set("b", 2, 1950);
  assert.equal(cache.get("a", 2499), 1, "within a TTL of the last confirmation (1800)");
  assert.equal(cache.get("b", 2499), 2);
  assert.equal(cache.get("a", 2500), undefined, "the epoch of 2500 is two after 1800's");
  assert.equal(cache.get("b", 2500), undefined, "set while confirmed: its age is not known");
  cache.set("c", 3, 2600);
  assert.equal(cache.get("c", 3400), 3, "without confirmations, the TTL as before");
  assert.equal(cache.get("c", 3500), undefined);
});

Deno.test("fence: a lookup in flight when it is called is not cached", () => {
  const cache = new LookupCache<number>({ ttlMs: 1000 });
  const seen = cache.version;
  cache.fence();
  cache.set("a", 1, 0, seen);
  assert.equal(cache.get("a", 1), undefined);
});

Deno.test("a full cache that no longer turns over evicts oldest first, entry after entry", () => {
  const cache = new LookupCache<number>({ ttlMs: 1000, maxEntries: 3 });
  cache.set("a", 0, 0);
  cache.set("b", 1, 0);
  cache.set("c", 2, 600); // a, b old; c young
  for (let i = 0; i < 50; i++) {
    const now = 600 + i * 100;
    cache.confirm(now); // the generations stop turning over
    cache.set(`k${i}`, i, now);
    if (i % 7 === 0) cache.set(`k${i}`, -i, now); // an update in place evicts nothing
    const kept = ["a", "b", "c", ...Array.from({ length: i + 1 }, (_, j) => `k${j}`)].slice(-3);
    assert.equal(cache.size, 3, `after k${i}`);
    for (const k of kept) assert.notEqual(cache.get(k, now), undefined, `${k} kept after k${i}`);
  }
});

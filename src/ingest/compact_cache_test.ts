import assert from "node:assert/strict";
import { DeviceCache } from "./device_cache.ts";
import { KeyedHash } from "./keyed_hash.ts";

// The compact cache's generations, through the device cache (ids by key); the same rules as
// the map cache's (src/ingest/lookup_cache_test.ts): src/ingest/cache_generations.ts.

Deno.test("compact: a cached entry is trusted for at most the TTL and at least half of it", () => {
  const cache = new DeviceCache({ ttlMs: 1000 });
  cache.set("a", 1, 0);
  assert.equal(cache.get("a", 499), 1);
  cache.set("b", 2, 600); // after the rotation at 500: b is young, a is old
  assert.equal(cache.get("a", 999), 1);
  assert.equal(cache.size, 2);
  assert.equal(cache.get("a", 1000), undefined, "a is one TTL old");
  assert.equal(cache.size, 1);
  assert.equal(cache.get("b", 1499), 2);
  assert.equal(cache.get("b", 1500), undefined, "b was set in the epoch two back");
  assert.equal(cache.get("a", 5000), undefined);
  assert.equal(cache.size, 0);
});

Deno.test("compact: confirmed entries outlive the TTL; when confirmations stop, all go within one TTL of the last", () => {
  const cache = new DeviceCache({ ttlMs: 1000 });
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

Deno.test("compact: delete, clear and fence keep a lookup that saw an older version out", () => {
  const cache = new DeviceCache({ ttlMs: 1000 });
  cache.set("x", 1, 0);
  cache.set("y", 2, 0);
  const seen = cache.version;
  cache.delete("x");
  assert.equal(cache.get("x", 1), undefined);
  assert.equal(cache.get("y", 1), 2);
  assert.equal(cache.size, 1);
  cache.set("x", 1, 2, seen);
  assert.equal(cache.get("x", 3), undefined, "set with the version from before the delete");
  const fenced = cache.version;
  cache.fence();
  cache.set("x", 1, 4, fenced);
  assert.equal(cache.get("x", 5), undefined, "set with the version from before the fence");
  cache.set("x", 1, 6, cache.version);
  assert.equal(cache.get("x", 7), 1);
  cache.clear();
  assert.equal(cache.size, 0);
  assert.equal(cache.get("x", 8), undefined);
  assert.equal(cache.get("y", 8), undefined);
  cache.set("x", 5, 9);
  assert.equal(cache.get("x", 10), 5, "set again after the clear");
});

Deno.test("compact: a TTL of 0 caches nothing and allocates nothing", () => {
  const cache = new DeviceCache({ ttlMs: 0 });
  cache.set("a", 1, 0);
  assert.equal(cache.get("a", 0), undefined);
  assert.equal(cache.maxEntries, 0);
  assert.equal(cache.misses, 1);
});

Deno.test("compact: a value that does not fit 32 bits is not held, and the key's older value goes", () => {
  const cache = new DeviceCache({ ttlMs: 1000 });
  cache.set("a", 1, 0);
  cache.set("a", 2 ** 32, 1);
  assert.equal(cache.get("a", 2), undefined);
  cache.set("a", 2 ** 32 - 1, 3);
  assert.equal(cache.get("a", 4), 2 ** 32 - 1);
  assert.equal(cache.size, 1);
});

Deno.test("compact: a table fills every slot it has room for before it evicts", () => {
  // 1,000 keys in 1,100 slots (91 %), as a million feeds in the default cache.
  const cache = new DeviceCache({ ttlMs: 1000, maxEntries: 1100 });
  for (let i = 0; i < 1000; i++) cache.set(`key ${i}`, i, 0);
  const held = Array.from({ length: 1000 }, (_, i) => cache.get(`key ${i}`, 1) === i);
  assert.equal(held.filter(Boolean).length, 1000);
  assert.equal(cache.size, 1000);
  assert.equal(cache.misses, 0);
});

Deno.test("compact: a full table evicts from the older generation, and never holds more than its slots", () => {
  const cache = new DeviceCache({ ttlMs: 1000, maxEntries: 16 }); // two buckets of 8
  for (let i = 0; i < 8; i++) cache.set(`old ${i}`, i, 0);
  for (let i = 0; i < 8; i++) cache.set(`young ${i}`, i, 600); // after the turn at 500
  assert.equal(cache.size, 16);
  cache.set("newest", 99, 700);
  assert.equal(cache.size, 16);
  assert.equal(cache.get("newest", 701), 99);
  for (let i = 0; i < 8; i++) assert.equal(cache.get(`young ${i}`, 701), i, `young ${i}`);
  const old = Array.from({ length: 8 }, (_, i) => cache.get(`old ${i}`, 701));
  assert.equal(old.filter((v) => v === undefined).length, 1, "one of the old ones went");
  // An update in place evicts nothing.
  cache.set("newest", 100, 702);
  assert.equal(cache.size, 16);
  assert.equal(cache.get("newest", 703), 100);
});

Deno.test("compact: when its generation stamps run out, the table is emptied once and goes on", () => {
  const cache = new DeviceCache({ ttlMs: 2 });
  // Each millisecond is a turn of the generations (TTL 2: epochs of 1 ms), so the entry of
  // the millisecond before is old but alive, except right after the stamps ran out.
  let emptied = 0;
  for (let now = 0; now < 9000; now++) {
    cache.set(`k${now}`, now, now);
    assert.equal(cache.get(`k${now}`, now), now, `at ${now}`);
    if (now === 0) continue;
    const before = cache.get(`k${now - 1}`, now);
    if (before === undefined) emptied++;
    else assert.equal(before, now - 1);
    assert.equal(cache.size, before === undefined ? 1 : 2, `size at ${now}`);
    assert.equal(cache.get(`k${now - 2}`, now), undefined, "two turns back");
  }
  assert.equal(emptied, 1);
  for (let i = 0; i < 9000; i++) {
    cache.clear();
    assert.equal(cache.get("k8999", 8999), undefined);
    cache.set("k8999", i, 8999);
    assert.equal(cache.get("k8999", 8999), i, `after ${i + 1} clears`);
  }
});

Deno.test("compact: keys are told apart by a keyed hash: the same keys land elsewhere under another key", () => {
  const a = new DeviceCache({ ttlMs: 1000, maxEntries: 64, hash: new KeyedHash() });
  const b = new DeviceCache({ ttlMs: 1000, maxEntries: 64, hash: new KeyedHash() });
  // Fill both far past their slots: what each keeps differs when the hashes differ.
  for (let i = 0; i < 500; i++) {
    a.set(`k${i}`, i, 0);
    b.set(`k${i}`, i, 0);
  }
  const keptA = Array.from({ length: 500 }, (_, i) => a.get(`k${i}`, 1) !== undefined);
  const keptB = Array.from({ length: 500 }, (_, i) => b.get(`k${i}`, 1) !== undefined);
  assert.notDeepEqual(keptA, keptB);
  for (let i = 0; i < 500; i++) {
    const v = a.get(`k${i}`, 1);
    if (v !== undefined) assert.equal(v, i, "a key never answers with another key's value");
  }
});

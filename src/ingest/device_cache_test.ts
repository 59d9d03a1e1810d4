import assert from "node:assert/strict";
import { DeviceCache, deviceKeyOf } from "./device_cache.ts";

const alice = "0b0a3c1e-4a4e-4f7a-9c55-0d5f6c1f0001";
const bob = "0b0a3c1e-4a4e-4f7a-9c55-0d5f6c1f0002";

Deno.test("the device cache holds device ids by (user, code): another user's device of the same code is another entry", () => {
  const cache = new DeviceCache({ ttlMs: 1000 });
  cache.set(deviceKeyOf(alice, "d1"), 7, 0);
  assert.equal(cache.get(deviceKeyOf(alice, "d1"), 1), 7);
  assert.equal(cache.get(deviceKeyOf(bob, "d1"), 1), undefined);
  // A code is any text after the user id: one that looks like a key of its own stays apart.
  assert.notEqual(deviceKeyOf(alice, "d1/x"), deviceKeyOf(alice, "d1"));
  cache.clear();
  assert.equal(cache.get(deviceKeyOf(alice, "d1"), 2), undefined);
});

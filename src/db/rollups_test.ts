import assert from "node:assert/strict";
import { foldSourceMs } from "./rollups.ts";

Deno.test("foldSourceMs: a coarse width folds from the largest finer width that divides it", () => {
  // 1h from 5m, 1d from 1h, 1w from 1d; the finest from none.
  const all = [60_000, 300_000, 3_600_000, 86_400_000, 604_800_000];
  assert.deepEqual(all.map((ms) => foldSourceMs(ms, all)), [
    null,
    60_000,
    300_000,
    3_600_000,
    86_400_000,
  ]);
  // 15m is no multiple of 10m: nothing to fold it from (the option refuses such widths).
  assert.equal(foldSourceMs(900_000, [600_000, 900_000]), null);
});

import assert from "node:assert/strict";
import { serveOptions } from "../cli/serve_options.ts";
import { processingOptions } from "../cli/option_groups.ts";
import { DEFAULT_FEED_CACHE_SIZE } from "./cache_sizes.ts";
import { memoryBudget } from "./memory_budget.ts";

const defaults = () =>
  memoryBudget({
    queueBytes: serveOptions.queueBytes.schema.parse(undefined),
    maxBatchBytes: processingOptions.maxBatchBytes.schema.parse(undefined),
    feedCacheSize: processingOptions.feedCacheSize.schema.parse(undefined),
  });

Deno.test("the memory budget at serve's defaults is within 250 MB (issue 26)", () => {
  const b = defaults();
  assert.ok(b.peakRssMb <= 250, `peak RSS bound ${b.peakRssMb} MB at the defaults`);
  assert.equal(
    b.peakRssMb,
    Math.ceil(48 + b.oldSpaceMb + b.youngMb + b.queuesMb + b.batchMb + b.cachesOffHeapMb),
  );
});

Deno.test("--feed-cache-size defaults to the caches' own default", () => {
  assert.equal(processingOptions.feedCacheSize.schema.parse(undefined), DEFAULT_FEED_CACHE_SIZE);
});

Deno.test("the memory budget grows with each bound, and its V8 flags say the old-space limit", () => {
  const base = { queueBytes: 1 << 20, maxBatchBytes: 1 << 20, feedCacheSize: 1000 };
  const b = memoryBudget(base);
  for (
    const more of [{ queueBytes: 64 << 20 }, { maxBatchBytes: 64 << 20 }, { feedCacheSize: 1e6 }]
  ) {
    const m = memoryBudget({ ...base, ...more });
    assert.ok(m.oldSpaceMb > b.oldSpaceMb && m.peakRssMb > b.peakRssMb, JSON.stringify(more));
  }
  assert.match(b.v8Flags, new RegExp(`--max-old-space-size=${b.oldSpaceMb}(,|$)`));
});

Deno.test("the systemd unit runs serve with the V8 flags of the defaults' budget", async () => {
  const unit = await Deno.readTextFile(
    new URL("../../deploy/systemd/feedline.service", import.meta.url),
  );
  assert.match(unit, new RegExp(`^Environment=DENO_V8_FLAGS=${defaults().v8Flags}$`, "m"));
});

Deno.test("deno task serve runs with the V8 flags of the defaults' budget", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(new URL("../../deno.json", import.meta.url)));
  assert.ok(
    tasks.tasks.serve.includes(`--v8-flags=${defaults().v8Flags} `),
    `deno.json's serve task: ${tasks.tasks.serve}; the budget says ${defaults().v8Flags}`,
  );
});

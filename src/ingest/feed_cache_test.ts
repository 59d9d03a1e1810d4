import assert from "node:assert/strict";
import { FeedCache, type FeedInfo } from "./feed_cache.ts";

// A plain feed is held as its id alone (docs/performance.md, "Fleet scale (issue 26)"); every
// other kind keeps what makes it different.
Deno.test("every kind of feed comes back from the cache as it went in", () => {
  const cache = new FeedCache({ ttlMs: 60_000 });
  const feeds: Record<string, FeedInfo> = {
    plain: { id: 1, isActive: true, thresholdMin: null, thresholdMax: null },
    inactive: { id: 2, isActive: false, thresholdMin: null, thresholdMax: null },
    min: { id: 3, isActive: true, thresholdMin: 0, thresholdMax: null },
    max: { id: 4, isActive: true, thresholdMin: null, thresholdMax: 0 },
    alerts: {
      id: 5,
      isActive: true,
      thresholdMin: null,
      thresholdMax: null,
      alerts: { alertMode: false, hysteresis: 0, minDurationUs: 0, watchesSilence: true },
    },
    both: { id: 6, isActive: false, thresholdMin: -0.1, thresholdMax: 1e300 },
    alertMode: {
      id: 7,
      isActive: true,
      thresholdMin: 1,
      thresholdMax: 2,
      alerts: { alertMode: true, hysteresis: 0.5, minDurationUs: 3e6, watchesSilence: false },
    },
  };
  for (const [key, feed] of Object.entries(feeds)) cache.set(key, feed, 0);
  for (const [key, feed] of Object.entries(feeds)) assert.deepEqual(cache.get(key, 1), feed, key);
  assert.equal(cache.get("absent", 1), undefined);
  assert.equal(cache.size, 7);
});

Deno.test("a feed whose id does not fit a slot is not cached, and its older entry goes", () => {
  const cache = new FeedCache({ ttlMs: 60_000 });
  cache.set("big", 9, 0);
  cache.set("big", { id: 2 ** 40, isActive: true, thresholdMin: null, thresholdMax: null }, 1);
  assert.equal(cache.get("big", 2), undefined);
  assert.equal(cache.size, 0);
});

Deno.test("a feed whose rules lost their slot to another feed's is a miss, and is held again when set", () => {
  // 16 feed slots and one bucket of 8 rules slots: the ninth feed with rules takes a slot.
  const cache = new FeedCache({ ttlMs: 60_000, maxEntries: 16 });
  const ruled = (id: number): FeedInfo => ({
    id,
    isActive: true,
    thresholdMin: id,
    thresholdMax: null,
  });
  for (let id = 1; id <= 9; id++) cache.set(`f${id}`, ruled(id), 0);
  const found = Array.from({ length: 9 }, (_, i) => cache.get(`f${i + 1}`, 1));
  const lost = found.filter((f) => f === undefined).length;
  assert.equal(lost, 1, "one feed's rules were overwritten");
  assert.equal(cache.misses, 1);
  for (let id = 1; id <= 9; id++) {
    const feed = found[id - 1];
    if (feed) assert.deepEqual(feed, ruled(id));
  }
});

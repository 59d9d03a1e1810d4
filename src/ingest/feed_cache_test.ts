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
    large: { id: 2 ** 40, isActive: true, thresholdMin: null, thresholdMax: null },
  };
  for (const [key, feed] of Object.entries(feeds)) cache.set(key, feed, 0);
  for (const [key, feed] of Object.entries(feeds)) assert.deepEqual(cache.get(key, 1), feed, key);
  assert.equal(cache.get("absent", 1), undefined);
  assert.equal(cache.size, 6);
});

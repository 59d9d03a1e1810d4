import assert from "node:assert/strict";
import { clockState, nowUs, reserveStampsThrough, setLane, wallUs } from "./clock.ts";

Deno.test("the receive clock in lane 5 of 16 stamps only µs ≡ 5 (mod 16), strictly increasing", () => {
  try {
    setLane(5, 16);
    let last = 0;
    for (let i = 0; i < 10_000; i++) {
      const t = nowUs();
      assert.equal(t % 16, 5);
      assert.ok(t > last, `stamp ${i} (${t}) not above ${last}`);
      last = t;
    }
    // A burst of 10,000 needs 160,000 µs of lane 5: the clock runs ahead of the wall clock
    // by at most that, never behind it.
    assert.ok(last >= wallUs() - 1000);
  } finally {
    setLane(0, 1);
  }
});

Deno.test("two lanes never share a stamp, however close in time", () => {
  const seen = new Set<number>();
  try {
    for (let round = 0; round < 200; round++) {
      for (const lane of [0, 1, 2]) {
        setLane(lane, 3);
        for (let i = 0; i < 5; i++) {
          const t = nowUs();
          assert.equal(t % 3, lane);
          assert.ok(!seen.has(t));
          seen.add(t);
        }
      }
    }
  } finally {
    setLane(0, 1);
  }
});

Deno.test("setLane keeps stamps above the floor a previous holder of the lane recorded", () => {
  try {
    const floor = wallUs() + 200_000; // a holder whose clock ran 0.2 s ahead
    setLane(7, 16, floor);
    const t = nowUs();
    assert.ok(t > floor);
    assert.equal(t % 16, 7);
    assert.equal(clockState().lastUs, t);
    assert.throws(() => setLane(16, 16), RangeError);
  } finally {
    setLane(0, 1);
  }
});

Deno.test("stamps a message reserved for its readings are never given to the next one, and the lane holds", () => {
  try {
    setLane(5, 16);
    const t = nowUs();
    reserveStampsThrough(t + 32 * 16);
    const next = nowUs();
    assert.ok(next > t + 32 * 16, `${next} above ${t} + 512`);
    assert.equal(next % 16, 5);
    reserveStampsThrough(t); // never backwards
    assert.ok(nowUs() > next);
  } finally {
    setLane(0, 1);
  }
});

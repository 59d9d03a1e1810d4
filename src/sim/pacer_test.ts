import assert from "node:assert/strict";
import { createPacer } from "./pacer.ts";
import { createRng } from "./prng.ts";

Deno.test("createPacer() releases rate × time tokens however late the wake-ups come", () => {
  const pacer = createPacer({ rate: 200, startMs: 0 });
  const rng = createRng(1);
  let now = 0;
  let sent = 0;
  while (now < 60_000) {
    sent += pacer.take(now, Infinity);
    // Wake-ups between 1 and 40 ms apart, as timers do on a loaded machine.
    now += Math.max(1, pacer.waitMs(now)) + rng.range(0, 40);
  }
  const expected = 200 * (now / 1000);
  assert.ok(Math.abs(sent - expected) <= 2, `sent ${sent}, expected ${expected}`);
});

Deno.test("createPacer() makes up a short stall but not a long one", () => {
  const pacer = createPacer({ rate: 100, startMs: 0, burstSeconds: 1 });
  assert.equal(pacer.take(0, Infinity), 1);
  assert.equal(pacer.take(500, Infinity), 50); // half a second: all of it
  assert.equal(pacer.take(10_500, Infinity), 100); // ten seconds: one second's worth
});

Deno.test("createPacer() takes no more than asked and keeps the rest", () => {
  const pacer = createPacer({ rate: 1000, startMs: 0 });
  pacer.take(0, Infinity);
  assert.equal(pacer.take(100, 30), 30);
  assert.equal(pacer.take(100, Infinity), 70);
  assert.ok(pacer.waitMs(100) > 0);
});

Deno.test("createPacer() with rate 0 does not limit", () => {
  const pacer = createPacer({ rate: 0, startMs: 0 });
  assert.equal(pacer.take(0, 5000), 5000);
  assert.equal(pacer.waitMs(0), 0);
});

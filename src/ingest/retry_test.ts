/** Retrying with backoff, on a clock the test moves. */
import assert from "node:assert/strict";
import { retryWithBackoff } from "./retry.ts";
import { ManualClock } from "./timers.ts";

Deno.test("retryWithBackoff waits first, then twice that, up to the most; resolves with the work", async () => {
  const clock = new ManualClock();
  const waits: number[] = [];
  let calls = 0;
  const done = retryWithBackoff(() => {
    calls++;
    return calls < 5 ? Promise.reject(new Error(`fail ${calls}`)) : Promise.resolve("written");
  }, {
    firstDelayMs: 100,
    maxDelayMs: 300,
    clock,
    onRetry: (_error, _attempt, delayMs) => waits.push(delayMs),
  });
  await clock.advance(100 + 200 + 300 + 300);
  assert.equal(await done, "written");
  assert.deepEqual(waits, [100, 200, 300, 300]);
});

Deno.test("retryWithBackoff throws the last error when the attempts run out or it is given up", async () => {
  const clock = new ManualClock();
  const failing = (attempt: number) => Promise.reject(new Error(`attempt ${attempt}`));
  const limited = retryWithBackoff(failing, {
    firstDelayMs: 10,
    maxDelayMs: 1000,
    attempts: 3,
    clock,
  });
  const outcome = assert.rejects(limited, /attempt 3/);
  await clock.advance(10 + 20);
  await outcome;

  let givenUp = false;
  const abandoned = retryWithBackoff(failing, {
    firstDelayMs: 10,
    maxDelayMs: 10,
    givenUp: () => givenUp,
    clock,
  });
  const abandonedOutcome = assert.rejects(abandoned, /attempt 2/);
  await clock.advance(10);
  givenUp = true;
  await clock.advance(10);
  await abandonedOutcome;
});

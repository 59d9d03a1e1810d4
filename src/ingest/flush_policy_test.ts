/** The flush policy alone: pure, so each case is a queue state and a time. */
import assert from "node:assert/strict";
import { FlushPolicy, type QueueState } from "./flush_policy.ts";

const SETTINGS = { batchSize: 100, batchIntervalMs: 1000, ackWindow: 50, ackIdleMs: 20 };

/** A queue with `queued` QoS 0 messages, the oldest queued at t=0. */
function state(over: Partial<QueueState> = {}): QueueState {
  return {
    queued: 1,
    unacked: 0,
    unackedQueued: 0,
    oldestQueuedAt: 0,
    lastArrivalAt: 0,
    stopping: false,
    ...over,
  };
}

Deno.test("flush policy: nothing queued waits for an arrival; stopping flushes now", () => {
  const policy = new FlushPolicy(SETTINGS);
  assert.equal(policy.delayUntilFlush(state({ queued: 0 }), 0), Infinity);
  assert.equal(policy.delayUntilFlush(state({ queued: 0, stopping: true }), 0), 0);
});

Deno.test("flush policy: QoS 0 waits out the batch interval from its oldest message", () => {
  const policy = new FlushPolicy(SETTINGS);
  assert.equal(policy.delayUntilFlush(state(), 0), 1000);
  assert.equal(policy.delayUntilFlush(state(), 999), 1);
  assert.equal(policy.delayUntilFlush(state(), 1200), 0);
  assert.equal(policy.delayUntilFlush(state({ queued: 100 }), 0), 0, "a full batch goes at once");
});

Deno.test("flush policy: unacknowledged messages go once nothing arrived for the idle time", () => {
  const policy = new FlushPolicy(SETTINGS);
  const s = state({ queued: 3, unacked: 3, unackedQueued: 3, lastArrivalAt: 5 });
  assert.equal(policy.delayUntilFlush(s, 10), 15);
  assert.equal(policy.ackFlushAt, 50, "not learnt before the stall");
  assert.equal(policy.delayUntilFlush(s, 25), 0);
  assert.equal(policy.ackFlushAt, 3, "a stall at 3 unacknowledged: the broker's window is 3");
  // Next time 3 wait, they go at once; more arriving raises the window, up to ackWindow.
  assert.equal(policy.delayUntilFlush(state({ queued: 3, unacked: 3, unackedQueued: 3 }), 0), 0);
  policy.delayUntilFlush(state({ queued: 9, unacked: 9, unackedQueued: 9 }), 0);
  assert.equal(policy.ackFlushAt, 9);
  policy.delayUntilFlush(state({ queued: 80, unacked: 80, unackedQueued: 80 }), 0);
  assert.equal(policy.ackFlushAt, 50, "never above --ack-window");
});

Deno.test("flush policy: which arrivals wake the loop", () => {
  const policy = new FlushPolicy(SETTINGS);
  assert.equal(policy.wakesOnArrival(state({ queued: 1 }), false), true, "the loop was idle");
  assert.equal(policy.wakesOnArrival(state({ queued: 2 }), false), false, "its timer is due");
  assert.equal(
    policy.wakesOnArrival(state({ queued: 2, unacked: 1, unackedQueued: 1 }), true),
    true,
    "the first awaiting an ack starts the idle deadline",
  );
  assert.equal(policy.wakesOnArrival(state({ queued: 100 }), false), true, "a full batch");
  assert.equal(policy.wakesOnArrival(state({ queued: 60, unacked: 50 }), false), true, "window");
});

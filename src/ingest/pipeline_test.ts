/**
 * The pipeline's loop, without a database and on a clock the test moves: the batch
 * writer is injected (PipelineOptions.write) and time is a `ManualClock`, so these tests
 * watch exactly which messages go into which batch and when acks are sent, and never wait
 * on the real clock. The policy alone: src/ingest/flush_policy_test.ts. The writer is
 * tested against PostgreSQL in test/processor_test.ts; the pipeline with it, in
 * test/serve_test.ts.
 */
import assert from "node:assert/strict";
import { nowUs } from "../clock.ts";
import { createLogger } from "../log.ts";
import type { Ack, Decoded, DecodedMessage } from "../core/message.ts";
import { Accounting } from "./accounting.ts";
import { createIngestMetrics } from "./metrics.ts";
import { Pipeline, type PipelineOptions } from "./pipeline.ts";
import type { BatchResult } from "./processor.ts";
import { ManualClock, settle } from "./timers.ts";
import { MESSAGE_OVERHEAD_BYTES, READING_OVERHEAD_BYTES } from "./message_bytes.ts";

/** What a one-reading message with an empty payload counts, besides its topic. */
const PER_MESSAGE = MESSAGE_OVERHEAD_BYTES + READING_OVERHEAD_BYTES;

const READING: Decoded = {
  kind: "readings",
  userId: "u",
  deviceCode: "d",
  readings: [{ feedKey: "f", value: 1, text: null, tsUs: null }],
  rejects: [],
};
const STATUS: Decoded = {
  kind: "status",
  userId: "u",
  deviceCode: "d",
  status: "online",
  details: null,
  tsUs: null,
};

function message(topic: string, decoded: Decoded = READING): DecodedMessage {
  return {
    inbound: {
      topic,
      payload: new Uint8Array(),
      qos: 1,
      retain: false,
      receivedAtUs: nowUs(),
    },
    decoded,
  };
}

function stored(batch: DecodedMessage[]): BatchResult {
  return {
    messages: batch.length,
    stored: batch.length,
    skipped: {},
    rejected: {},
    statuses: 0,
    conflicts: 0,
    outcomes: { stored: batch.length, rejected: 0, skipped: 0 },
    rejects: [],
  };
}

/** A pipeline whose writer records each batch (by topic) and stores everything. */
function rig(opts: Partial<PipelineOptions> = {}) {
  const batches: string[][] = [];
  const acked: string[] = [];
  const metrics = createIngestMetrics();
  const accounting = new Accounting(metrics);
  const clock = new ManualClock();
  const pipeline = new Pipeline({
    ...baseOptions(accounting, clock),
    write: (batch) => {
      batches.push(batch.map((p) => p.inbound.topic));
      return Promise.resolve(stored(batch));
    },
    ...opts,
  });
  const ack = (topic: string): Ack => () => acked.push(topic);
  return {
    pipeline,
    batches,
    acked,
    accounting,
    clock,
    /** Offers a message counted as received, as the intake does. */
    offer(topic: string, opts: { ack?: boolean; decoded?: Decoded } = {}) {
      assert.ok(pipeline.offer(message(topic, opts.decoded), opts.ack ? ack(topic) : null));
      accounting.received();
    },
  };
}

/**
 * Lets the promise jobs in motion run (no time passes), then asserts `done()`: what the
 * loop does without a timer being due happens within these turns.
 */
async function until(what: string, done: () => boolean): Promise<void> {
  for (let i = 0; i < 20 && !done(); i++) await settle();
  assert.ok(done(), `not done without time passing: ${what}`);
}

Deno.test("Pipeline writes a full batch at once", async () => {
  const r = rig({ batchSize: 3 });
  r.pipeline.start();
  for (const t of ["a", "b", "c", "d"]) r.offer(t);
  await until("the full batch", () => r.batches.length === 1);
  assert.deepEqual(r.batches, [["a", "b", "c"]]);
  await r.pipeline.drain(1000);
  assert.deepEqual(r.batches, [["a", "b", "c"], ["d"]]);
});

Deno.test("Pipeline writes a QoS 0 message once the batch interval has passed, not before", async () => {
  const r = rig({ batchIntervalMs: 150 });
  r.pipeline.start();
  r.offer("a");
  await r.clock.advance(149);
  assert.deepEqual(r.batches, [], "not before the interval");
  await r.clock.advance(1);
  assert.deepEqual(r.batches, [["a"]]);
  await r.pipeline.drain(1000);
});

Deno.test("Pipeline writes when the ack window is full, and acks only after the write", async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => release = resolve);
  const r = rig({ ackWindow: 2 });
  const write = (batch: DecodedMessage[]) => {
    r.batches.push(batch.map((p) => p.inbound.topic));
    return gate.then(() => stored(batch));
  };
  const p = new Pipeline({ ...rigOptions(r), write, ackWindow: 2 });
  p.start();
  assert.ok(p.offer(message("a"), () => r.acked.push("a")));
  assert.ok(p.offer(message("b"), () => r.acked.push("b")));
  await until("the window's batch", () => r.batches.length === 1);
  assert.equal(p.unacked, 2);
  await r.clock.advance(60_000);
  assert.deepEqual(r.acked, [], "no ack before the write resolves");
  release();
  await until("the acks", () => r.acked.length === 2);
  assert.equal(p.unacked, 0);
  await p.drain(1000);
});

Deno.test("Pipeline writes unacknowledged messages once nothing arrived for the ack idle time", async () => {
  const r = rig({ ackIdleMs: 30 });
  r.pipeline.start();
  r.offer("a", { ack: true });
  await r.clock.advance(29);
  assert.deepEqual(r.batches, [], "not before the idle time");
  await r.clock.advance(1);
  assert.deepEqual(r.batches, [["a"]]);
  assert.deepEqual(r.acked, ["a"]);
  await r.pipeline.drain(1000);
});

Deno.test("a QoS 1 message queued behind a QoS 0 one starts the ack idle deadline (not the batch interval)", async () => {
  const r = rig({ ackIdleMs: 30, batchIntervalMs: 60_000 });
  r.pipeline.start();
  r.offer("qos0");
  await r.clock.advance(30); // the loop now sleeps until the QoS 0 message's batch interval
  r.offer("qos1", { ack: true });
  // Well before the 60 s interval: the ack idle deadline (30 ms) wrote both.
  await r.clock.advance(30);
  assert.deepEqual(r.acked, ["qos1"]);
  assert.deepEqual(r.batches, [["qos0", "qos1"]]);
  await r.pipeline.drain(1000);
});

Deno.test("Pipeline writes device status before feed data", async () => {
  const r = rig({ batchSize: 10 });
  r.offer("data1");
  r.offer("data2");
  r.offer("status1", { decoded: STATUS });
  r.pipeline.start();
  await r.pipeline.drain(1000);
  assert.deepEqual(r.batches, [["status1", "data1", "data2"]]);
});

Deno.test("Pipeline keeps and retries a batch the writer fails on, and acks it once written", async () => {
  let failures = 2;
  const r = rig({ ackIdleMs: 5 });
  const transient = Object.assign(new Error("connection refused"), { code: "ECONNREFUSED" });
  const p = new Pipeline({
    ...rigOptions(r),
    ackIdleMs: 5,
    write(batch) {
      r.batches.push(batch.map((m) => m.inbound.topic));
      return failures-- > 0 ? Promise.reject(transient) : Promise.resolve(stored(batch));
    },
  });
  p.start();
  assert.ok(p.offer(message("a"), () => r.acked.push("a")));
  await r.clock.advance(5); // the idle flush: the first attempt fails
  assert.deepEqual(r.batches, [["a"]]);
  assert.equal(p.dbReady, false, "a transient failure marks the database down");
  await r.clock.advance(4);
  assert.equal(r.batches.length, 1, "the first retry waits retryMinMs (5 ms)");
  await r.clock.advance(1 + 10); // 5 ms, then twice that (retryMaxMs 10)
  assert.deepEqual(r.acked, ["a"]);
  assert.deepEqual(r.batches, [["a"], ["a"], ["a"]]);
  assert.equal(p.dbReady, true, "ready again once written");
  await p.drain(1000);
});

Deno.test("a QoS 0 message finds its queue full; a status message still has room", () => {
  const r = rig({ queueSize: 2, statusQueueSize: 1 });
  r.offer("a");
  r.offer("b");
  assert.equal(r.pipeline.offer(message("c"), null), false);
  assert.equal(r.pipeline.isFull("readings"), true);
  assert.equal(r.pipeline.isFull("status"), false);
  assert.equal(r.pipeline.offer(message("s", STATUS), null), true);
});

Deno.test("drain at its deadline counts every message left: QoS 0 dropped, QoS 1 discarded", async () => {
  const r = rig({ batchSize: 2, ackIdleMs: 5 });
  const p = new Pipeline({
    ...rigOptions(r),
    batchSize: 2,
    write: () => new Promise<BatchResult>(() => {}), // a write that never ends
  });
  p.start();
  const offer = (t: string, ack: boolean) => {
    assert.ok(p.offer(message(t), ack ? () => r.acked.push(t) : null));
    r.accounting.received();
  };
  offer("a", true);
  offer("b", false);
  offer("c", true);
  offer("d", false);
  offer("e", false);
  await r.clock.advance(5); // the idle flush takes a batch that never commits
  const left = p.drain(50);
  await r.clock.advance(50);
  assert.equal(await left, 5);
  const terms = r.accounting.terms(p.queued, p.inFlight);
  assert.equal(terms.balanced, true, JSON.stringify(terms));
  assert.deepEqual(r.accounting.byReason().discarded.shutdown, 2);
  assert.deepEqual(r.accounting.byReason().dropped.shutdown, 3);
  assert.deepEqual(r.acked, []);
});

/** The options `rig` built, to make a second pipeline with another writer. */
function rigOptions(r: ReturnType<typeof rig>): PipelineOptions {
  return baseOptions(r.accounting, r.clock);
}

/** Quiet, small, slow-to-flush defaults: each test sets what it is about. */
function baseOptions(accounting: Accounting, clock: ManualClock): PipelineOptions {
  return {
    write: () => Promise.reject(new Error("unused")),
    batchSize: 1000,
    batchIntervalMs: 60_000,
    queueSize: 100,
    statusQueueSize: 100,
    ackWindow: 1000,
    ackIdleMs: 60_000,
    log: createLogger({ level: "error", write: () => {} }),
    metrics: accounting.metrics,
    accounting,
    retryMinMs: 5,
    retryMaxMs: 10,
    clock,
  };
}

Deno.test("Pipeline bounds the bytes of a batch, taking at least one message", async () => {
  // Two of the six-character topics fit, not three: each counts the overheads too.
  const r = rig({ batchSize: 100, maxBatchBytes: 2 * (PER_MESSAGE + 6) + 1 });
  for (const t of ["aaaaaa", "bbbbbb", "cccccc", "dddddddddddddddddddd", "eeeeee"]) r.offer(t);
  r.pipeline.start();
  await r.pipeline.drain(1000);
  assert.deepEqual(r.batches, [
    ["aaaaaa", "bbbbbb"],
    ["cccccc"],
    ["dddddddddddddddddddd"],
    ["eeeeee"],
  ]);
});

Deno.test("Pipeline learns a smaller broker window from a stall, and raises it when more arrive", async () => {
  let release!: () => void;
  let gate = Promise.resolve();
  const r = rig();
  const write = (batch: DecodedMessage[]) => {
    r.batches.push(batch.map((p) => p.inbound.topic));
    return gate.then(() => stored(batch));
  };
  const p = new Pipeline({ ...rigOptions(r), write, ackWindow: 1000, ackIdleMs: 30 });
  p.start();
  const offer = (t: string) => assert.ok(p.offer(message(t), () => r.acked.push(t)));
  // A broker that keeps a window of 3: three arrive, then nothing until they are acked.
  ["a", "b", "c"].forEach(offer);
  await r.clock.advance(30);
  assert.equal(r.batches.length, 1, "the idle flush");
  assert.equal(p.ackFlushAt, 3, "the stall at 3 unacked is the broker's window");
  await until("the acks", () => r.acked.length === 3);
  // The next three are written at once, without waiting for the idle time.
  gate = new Promise<void>((resolve) => release = resolve);
  ["d", "e", "f"].forEach(offer);
  await until("the window's batch", () => r.batches.length === 2);
  assert.deepEqual(r.batches[1], ["d", "e", "f"]);
  // More than the learnt window arrive while that batch is written: the window grows.
  ["g", "h", "i", "j", "k"].forEach(offer);
  release();
  await until("the next batch", () => r.batches.length === 3);
  assert.deepEqual(r.batches[2], ["g", "h", "i", "j", "k"]);
  assert.equal(p.ackFlushAt, 5);
  await p.drain(1000);
});

Deno.test("Pipeline bounds its data queue by bytes, says so, and has room again once a batch is taken", async () => {
  const r = rig({ queueSize: 1000, queueBytes: 3 * (PER_MESSAGE + 1) + 2048, ackIdleMs: 5 });
  const big = (t: string) => ({
    ...message(t),
    inbound: { ...message(t).inbound, payload: new Uint8Array(1024) },
  });
  const p = r.pipeline;
  assert.ok(p.offer(big("a"), () => r.acked.push("a")));
  assert.ok(p.offer(big("b"), () => r.acked.push("b")));
  assert.ok(
    p.offer(big("c"), () => r.acked.push("c")),
    "below the bound, a message is taken even if it overshoots",
  );
  assert.equal(p.queuedBytes, 3 * (PER_MESSAGE + 1 + 1024));
  assert.deepEqual(p.holdingBack, { queue: "data", by: "bytes" });
  assert.equal(p.isFull("readings"), true);
  assert.equal(p.offer(big("d"), () => {}), false, "full by bytes with 3 of 1000 messages");
  assert.equal(p.isFull("status"), false, "the status queue has a byte bound of its own");
  let room = false;
  p.waitForRoom().then(() => room = true);
  p.start();
  await r.clock.advance(5); // the idle flush takes the three
  await until("room once the batch is out of the queue", () => room);
  assert.equal(p.queuedBytes, 0);
  assert.equal(p.holdingBack, null);
  await until("the acks", () => r.acked.length === 3);
  assert.equal(p.inFlightBytes, 0, "nothing in flight once acknowledged");
  await p.drain(1000);
});

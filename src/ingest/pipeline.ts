/**
 * The pipeline between a source and the processor: two bounded queues (device status
 * first), and a loop that forms batches and commits them, then acknowledges.
 *
 * A batch is flushed when it is full, when its oldest message has waited the batch
 * interval, and, for messages awaiting an acknowledgement, when the broker's in-flight
 * window is about to run out or when no message has arrived for a moment (the broker may
 * be waiting for our acks: a window smaller than configured looks exactly like that).
 * The window is learnt: a stall at U unacknowledged messages means the broker's window is
 * U, and the next batches are flushed as soon as U wait; more than that arriving while a
 * batch is written raises it again, up to `ackWindow` (docs/scaling.md, "The in-flight
 * window comes first").
 * A failed batch is kept and retried with backoff; nothing is acknowledged before the
 * transaction that holds it commits. Only transient database errors (src/db/errors.ts)
 * mark the database as down.
 *
 * Shutdown (`drain`) keeps its deadline even when a batch hangs: at the deadline the
 * batch in flight and everything queued are abandoned and counted, QoS 0 as
 * `dropped{shutdown}`, QoS 1/2 (left unacknowledged with the broker, which redelivers
 * them) as `discarded{shutdown}`.
 */
import type { IngestMetrics } from "./metrics.ts";
import type { Logger } from "../log.ts";
import type { Ack, Pending } from "../core/message.ts";
import type { BatchResult } from "./processor.ts";
import type { Accounting } from "./accounting.ts";
import { BoundedQueue } from "./queue.ts";
import { wallUs } from "../clock.ts";
import { isTransientDbError } from "../db/errors.ts";

/** A message waiting in a queue. */
export interface QueueItem {
  pending: Pending;
  /** Null for messages that need no acknowledgement (QoS 0, files). */
  ack: Ack | null;
  /** performance.now() when queued. */
  queuedAt: number;
}

/** Options of the pipeline. */
export interface PipelineOptions {
  /**
   * Writes one batch and tells what became of each message: `processBatch` against the
   * database in `serve`; any function in the pipeline's own tests. Throws only when the
   * batch must be kept and retried (src/db/errors.ts says which errors those are).
   */
  write(batch: Pending[]): Promise<BatchResult>;
  batchSize: number;
  /** Most payload and topic bytes in one batch (at least one message is always taken). */
  maxBatchBytes?: number;
  batchIntervalMs: number;
  queueSize: number;
  statusQueueSize: number;
  /** Flush when this many messages await acknowledgement (the broker's window). */
  ackWindow: number;
  /** Flush unacknowledged messages once nothing arrived for this long. */
  ackIdleMs: number;
  log: Logger;
  metrics: IngestMetrics;
  accounting: Accounting;
  retryMinMs?: number;
  retryMaxMs?: number;
}

/**
 * Called after each commit, before the acks are sent (the capture file and the
 * operations side listen here); one that fails is logged and the others still run.
 */
export type CommitListener = (items: QueueItem[], result: BatchResult) => void | Promise<void>;

/** Batches messages and writes them. */
export class Pipeline {
  readonly #opts: PipelineOptions;
  readonly #status: BoundedQueue<QueueItem>;
  readonly #data: BoundedQueue<QueueItem>;
  #unackedQueued = 0;
  #unackedInFlight = 0;
  /** Unacknowledged messages at which a batch is flushed: the window as learnt so far. */
  #flushAt: number;
  #lastArrival = 0;
  #stopping = false;
  #abandon = false;
  #wake: (() => void) | null = null;
  #roomWaiters: (() => void)[] = [];
  #loop: Promise<void> | null = null;
  #dbReady = true;
  #inFlight = 0;
  /** The batch being written, until it is acknowledged or abandoned. */
  #batch: { items: QueueItem[]; acks: number; startedAt: number; abandoned: boolean } | null = null;
  #batchesTaken = 0;
  readonly #commitListeners: CommitListener[] = [];

  constructor(opts: PipelineOptions) {
    this.#opts = opts;
    this.#flushAt = opts.ackWindow;
    this.#status = new BoundedQueue(opts.statusQueueSize);
    this.#data = new BoundedQueue(opts.queueSize);
  }

  /** Messages in the queues. */
  get queued(): number {
    return this.#status.length + this.#data.length;
  }
  get statusQueued(): number {
    return this.#status.length;
  }
  get dataQueued(): number {
    return this.#data.length;
  }
  /** Messages taken in the batch being written. */
  get inFlight(): number {
    return this.#inFlight;
  }
  /** Messages received but not yet acknowledged. */
  get unacked(): number {
    return this.#unackedQueued + this.#unackedInFlight;
  }
  /** Unacknowledged messages that make a batch flush now: the broker's window as learnt. */
  get ackFlushAt(): number {
    return this.#flushAt;
  }
  /** How long the oldest queued message has waited, in ms (0 when none is queued). */
  get oldestQueuedMs(): number {
    const oldest = Math.min(
      this.#status.peek()?.queuedAt ?? Infinity,
      this.#data.peek()?.queuedAt ?? Infinity,
    );
    return oldest === Infinity ? 0 : performance.now() - oldest;
  }
  /** False while the last batch attempt failed with a transient database error. */
  get dbReady(): boolean {
    return this.#dbReady;
  }
  /** How long the batch being written has been out of the queues, in ms (0: none). */
  get batchAgeMs(): number {
    return this.#batch ? performance.now() - this.#batch.startedAt : 0;
  }
  /** Batches taken from the queues so far: tells one batch from the next. */
  get batchesTaken(): number {
    return this.#batchesTaken;
  }

  /** Adds a listener for committed batches, in the order they are to run. */
  onCommit(listener: CommitListener): void {
    this.#commitListeners.push(listener);
  }

  /** Starts the batch loop. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /**
   * Queues a message. False when its queue is full: the caller holds it back (QoS 1/2)
   * or drops and counts it (QoS 0).
   */
  offer(pending: Pending, ack: Ack | null): boolean {
    const queue = pending.decoded.kind === "status" ? this.#status : this.#data;
    const item: QueueItem = { pending, ack, queuedAt: performance.now() };
    if (!queue.push(item)) return false;
    this.#lastArrival = item.queuedAt;
    if (ack) this.#unackedQueued++;
    // Wake the loop only when it has to act on this message now, when it was idle, or
    // when this is the first message awaiting an ack: the loop may be asleep until the
    // batch interval of a QoS 0 message ahead of it, and the ack-idle deadline must start
    // now (otherwise a QoS 1 reading behind a QoS 0 one waited the whole interval).
    // Otherwise its timer is already due.
    if (
      this.queued === 1 || this.queued >= this.#opts.batchSize ||
      this.unacked >= this.#flushAt || (ack !== null && this.#unackedQueued === 1)
    ) {
      this.#wake?.();
    }
    return true;
  }

  /** Resolves when both queues have room. */
  waitForRoom(): Promise<void> {
    if (!this.#status.full && !this.#data.full) return Promise.resolve();
    return new Promise((resolve) => this.#roomWaiters.push(resolve));
  }

  /** Is the queue this message would go to full? */
  isFull(kind: Pending["decoded"]["kind"]): boolean {
    return kind === "status" ? this.#status.full : this.#data.full;
  }

  /**
   * Writes everything queued, then stops. After `deadlineMs` (database down or hung) it
   * gives up without waiting for the batch in flight: the unacknowledged messages stay
   * with the broker, which redelivers them (`discarded{shutdown}`); QoS 0 ones are lost
   * (`dropped{shutdown}`). Returns how many messages were abandoned.
   */
  async drain(deadlineMs = 30_000): Promise<number> {
    this.#stopping = true;
    this.#wake?.();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<"deadline">((resolve) => {
      timer = setTimeout(() => resolve("deadline"), deadlineMs);
    });
    try {
      const first = await Promise.race([this.#loop ?? Promise.resolve(), deadline]);
      if (first !== "deadline") return 0;
    } finally {
      clearTimeout(timer);
    }
    return this.#abandonAll();
  }

  /**
   * `drain`, then the final accounting line (docs/delivery.md, "Where every message
   * ends"): every message the process received is in exactly one of its terms.
   */
  async shutdown(deadlineMs: number): Promise<number> {
    const { log, accounting, metrics } = this.#opts;
    const left = await this.drain(deadlineMs);
    if (left > 0) {
      log.warn("shutdown timeout reached; left unwritten messages", {
        messages: left,
        shutdown_timeout_ms: deadlineMs,
      });
    }
    const { balanced: _, ...terms } = accounting.terms(this.queued, this.inFlight);
    const byReason = accounting.byReason();
    log.info("stopped", {
      ...terms,
      unwritten: left,
      // What the commits put in each table, to be checked against the rows
      // (docs/delivery.md, "Where every message ends").
      readingsStored: metrics.stored.total(),
      statusEventsRecorded: metrics.statuses.total(),
      rejectsByReason: accounting.rejectsByReason(),
      // Readings absorbed by the key of a different stored reading: lost, not stored.
      readingConflicts: metrics.conflicts.total(),
      droppedByReason: byReason.dropped,
      discardedByReason: byReason.discarded,
    });
    return left;
  }

  /** Gives up on the batch in flight and everything queued, counting each message. */
  #abandonAll(): number {
    this.#abandon = true;
    this.#wake?.();
    const { accounting } = this.#opts;
    const items: QueueItem[] = [];
    const batch = this.#batch;
    if (batch && !batch.abandoned) {
      batch.abandoned = true;
      items.push(...batch.items);
      this.#unackedInFlight -= batch.acks;
      this.#inFlight = 0;
      this.#batch = null;
    }
    items.push(...this.#status.take(this.#status.length), ...this.#data.take(this.#data.length));
    this.#unackedQueued = 0;
    let unacked = 0;
    for (const item of items) if (item.ack) unacked++;
    accounting.discarded("shutdown", unacked);
    accounting.dropped("shutdown", items.length - unacked);
    this.#notifyRoom();
    return items.length;
  }

  async #run(): Promise<void> {
    while (!this.#abandon) {
      const delay = this.#delayUntilFlush();
      if (delay === 0) {
        if (this.queued === 0) break; // stopping and empty
        try {
          await this.#flush();
        } catch (error) {
          // #flush handles its own failures; this is the last guard of the loop, which
          // must never end while feedline runs.
          this.#opts.log.error("batch loop error", { error: (error as Error)?.message });
          await this.#sleep(this.#opts.retryMinMs ?? 100);
        }
      } else {
        await this.#sleep(delay);
      }
    }
  }

  #delayUntilFlush(): number {
    const n = this.queued;
    if (this.#stopping) return 0;
    if (n === 0) return Infinity;
    const unacked = this.unacked;
    if (n >= this.#opts.batchSize || unacked >= this.#flushAt) {
      // More arrived than the learnt window while the last batch was written: the
      // broker's window is at least that.
      if (unacked > this.#flushAt) this.#flushAt = Math.min(this.#opts.ackWindow, unacked);
      return 0;
    }
    const now = performance.now();
    const oldest = Math.min(
      this.#status.peek()?.queuedAt ?? Infinity,
      this.#data.peek()?.queuedAt ?? Infinity,
    );
    const due = oldest + this.#opts.batchIntervalMs;
    if (this.#unackedQueued > 0) {
      const idleDue = this.#lastArrival + this.#opts.ackIdleMs;
      if (idleDue < due) {
        if (idleDue > now) return idleDue - now;
        // The broker stopped sending at `unacked` awaiting their acks: its window (here
        // always below the flush point, so never above the configured window).
        this.#flushAt = Math.min(this.#opts.ackWindow, Math.max(1, unacked));
        return 0;
      }
    }
    return Math.max(0, due - now);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = () => {
        clearTimeout(timer);
        if (this.#wake === done) this.#wake = null;
        resolve();
      };
      if (Number.isFinite(ms)) timer = setTimeout(done, Math.max(1, ms));
      this.#wake = done;
    });
  }

  #notifyRoom(): void {
    if (this.#roomWaiters.length === 0 || this.#status.full || this.#data.full) return;
    const waiters = this.#roomWaiters;
    this.#roomWaiters = [];
    for (const w of waiters) w();
  }

  async #flush(): Promise<void> {
    const { batchSize, metrics, log } = this.#opts;
    // A batch holds at most batchSize messages and, past its first, maxBatchBytes of
    // payload and topic: memory per batch stays bounded whatever the messages' size.
    let bytes = 0;
    const maxBytes = this.#opts.maxBatchBytes ?? Infinity;
    const fits = (item: QueueItem) => {
      const size = item.pending.inbound.payload.byteLength + item.pending.inbound.topic.length;
      if (bytes > 0 && bytes + size > maxBytes) return false;
      bytes += size;
      return true;
    };
    const items = this.#status.take(batchSize, fits);
    if (items.length < batchSize && (bytes === 0 || bytes < maxBytes)) {
      items.push(...this.#data.take(batchSize - items.length, fits));
    }
    let acks = 0;
    for (const item of items) if (item.ack) acks++;
    this.#unackedQueued -= acks;
    this.#unackedInFlight += acks;
    this.#inFlight = items.length;
    const batch = { items, acks, startedAt: performance.now(), abandoned: false };
    this.#batch = batch;
    this.#batchesTaken++;
    this.#notifyRoom();

    const pending = items.map((i) => i.pending);
    let backoff = this.#opts.retryMinMs ?? 100;
    let result: BatchResult | null = null;
    while (result === null) {
      const started = performance.now();
      try {
        result = await this.#opts.write(pending);
        metrics.batchDuration.observe((performance.now() - started) / 1000);
      } catch (error) {
        // Abandoned at the shutdown deadline: already counted, nothing to retry.
        if (batch.abandoned) return;
        metrics.batchErrors.inc();
        const message = (error as Error)?.message ?? String(error);
        if (!isTransientDbError(error)) {
          // Not the database being away: a bug (the processor turns data errors into
          // reject rows). Kept and retried all the same, never reported as a database
          // outage; a batch that never commits shows as a stalled writer on /readyz.
          log.error("batch failed with an unexpected error; keeping it and retrying", {
            messages: items.length,
            error: message,
          });
        } else if (this.#dbReady) {
          log.warn("batch failed; keeping it and retrying", {
            messages: items.length,
            error: message,
          });
          this.#dbReady = false;
        } else {
          log.debug("batch retry failed", { error: message });
        }
        await this.#sleep(backoff);
        if (batch.abandoned) return;
        backoff = Math.min(backoff * 2, this.#opts.retryMaxMs ?? 5000);
      }
    }
    // Committed after the shutdown deadline gave up on it: its messages were counted as
    // dropped or discarded, and the broker redelivers the unacknowledged ones.
    if (batch.abandoned) return;
    if (!this.#dbReady) log.info("database is back; batch written", { messages: items.length });
    this.#dbReady = true;

    for (const listener of this.#commitListeners) {
      try {
        await listener(items, result);
      } catch (error) {
        log.error("after-commit hook failed", { error: (error as Error)?.message });
      }
    }
    if (batch.abandoned) return;
    for (const item of items) {
      // One failing ack (a socket error) must not stop the others, nor the loop.
      try {
        item.ack?.();
      } catch (error) {
        log.error("acknowledgement failed", { error: (error as Error)?.message });
      }
    }
    this.#unackedInFlight -= acks;
    this.#inFlight = 0;
    this.#batch = null;

    metrics.batches.inc();
    this.#opts.accounting.committed(result.outcomes);
    metrics.batchSize.observe(items.length);
    metrics.stored.inc(undefined, result.stored);
    metrics.statuses.inc(undefined, result.statuses);
    if (result.conflicts > 0) metrics.conflicts.inc(undefined, result.conflicts);
    for (const [reason, n] of Object.entries(result.skipped)) metrics.skipped.inc({ reason }, n);
    for (const [reason, n] of Object.entries(result.rejected)) metrics.rejected.inc({ reason }, n);
    const now = wallUs();
    for (const item of items) metrics.lag.observe((now - item.pending.inbound.receivedAtUs) / 1e6);
  }
}

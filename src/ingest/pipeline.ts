/**
 * The pipeline between a source and the processor: two bounded queues (device status
 * first), and a loop that forms batches and commits them, then acknowledges.
 *
 * A batch is flushed when it is full, when its oldest message has waited the batch
 * interval, and, for messages awaiting an acknowledgement, when the broker's in-flight
 * window is about to run out or when no message has arrived for a moment (the broker may
 * be waiting for our acks: a window smaller than configured looks exactly like that).
 * A failed batch is kept and retried with backoff; nothing is acknowledged before the
 * transaction that holds it commits.
 */
import type postgres from "postgres";
import type { IngestMetrics } from "./metrics.ts";
import type { Logger } from "../log.ts";
import type { Ack, Pending } from "../core/message.ts";
import { type BatchResult, processBatch, type ProcessorOptions } from "./processor.ts";
import { BoundedQueue } from "./queue.ts";
import { nowUs } from "../clock.ts";

export type { Ack };

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
  sql: postgres.Sql;
  processor: ProcessorOptions;
  batchSize: number;
  batchIntervalMs: number;
  queueSize: number;
  statusQueueSize: number;
  /** Flush when this many messages await acknowledgement (the broker's window). */
  ackWindow: number;
  /** Flush unacknowledged messages once nothing arrived for this long. */
  ackIdleMs: number;
  log: Logger;
  metrics: IngestMetrics;
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Called after each commit, before the acks are sent (capture files hook in here). */
  onCommitted?: (items: QueueItem[], result: BatchResult) => void | Promise<void>;
}

/** Batches messages and writes them. */
export class Pipeline {
  readonly #opts: PipelineOptions;
  readonly #status: BoundedQueue<QueueItem>;
  readonly #data: BoundedQueue<QueueItem>;
  #unackedQueued = 0;
  #unackedInFlight = 0;
  #lastArrival = 0;
  #stopping = false;
  #abandon = false;
  #wake: (() => void) | null = null;
  #roomWaiters: (() => void)[] = [];
  #loop: Promise<void> | null = null;
  #dbReady = true;
  #inFlight = 0;

  constructor(opts: PipelineOptions) {
    this.#opts = opts;
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
  /** How long the oldest queued message has waited, in ms (0 when none is queued). */
  get oldestQueuedMs(): number {
    const oldest = Math.min(
      this.#status.peek()?.queuedAt ?? Infinity,
      this.#data.peek()?.queuedAt ?? Infinity,
    );
    return oldest === Infinity ? 0 : performance.now() - oldest;
  }
  /** False while the last batch attempt failed. */
  get dbReady(): boolean {
    return this.#dbReady;
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
    // Wake the loop only when it has to act on this message now, or when it was idle;
    // otherwise its timer is already due.
    if (
      this.queued === 1 || this.queued >= this.#opts.batchSize ||
      this.unacked >= this.#opts.ackWindow
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
   * Removes queued messages for which `drop` is true (e.g. those the broker will
   * redeliver after a reconnect); returns how many.
   */
  discardQueued(drop: (item: QueueItem) => boolean): number {
    let unacked = 0;
    const counted = (item: QueueItem) => {
      const d = drop(item);
      if (d && item.ack) unacked++;
      return d;
    };
    const n = this.#status.removeWhere(counted) + this.#data.removeWhere(counted);
    this.#unackedQueued -= unacked;
    this.#notifyRoom();
    return n;
  }

  /**
   * Writes everything queued, then stops. After `deadlineMs` (database still down), it
   * gives up: the unacknowledged messages stay with the broker, which redelivers them.
   * Returns how many messages were left unwritten.
   */
  async drain(deadlineMs = 30_000): Promise<number> {
    this.#stopping = true;
    this.#wake?.();
    const timer = setTimeout(() => {
      this.#abandon = true;
      this.#wake?.();
    }, deadlineMs);
    try {
      await this.#loop;
    } finally {
      clearTimeout(timer);
    }
    const left = this.queued + this.#inFlight;
    return left;
  }

  async #run(): Promise<void> {
    while (!this.#abandon) {
      const delay = this.#delayUntilFlush();
      if (delay === 0) {
        if (this.queued === 0) break; // stopping and empty
        await this.#flush();
      } else {
        await this.#sleep(delay);
      }
    }
  }

  #delayUntilFlush(): number {
    const n = this.queued;
    if (this.#stopping) return 0;
    if (n === 0) return Infinity;
    if (n >= this.#opts.batchSize || this.unacked >= this.#opts.ackWindow) return 0;
    const now = performance.now();
    const oldest = Math.min(
      this.#status.peek()?.queuedAt ?? Infinity,
      this.#data.peek()?.queuedAt ?? Infinity,
    );
    let due = oldest + this.#opts.batchIntervalMs;
    if (this.#unackedQueued > 0) due = Math.min(due, this.#lastArrival + this.#opts.ackIdleMs);
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
    const items = this.#status.take(batchSize);
    if (items.length < batchSize) items.push(...this.#data.take(batchSize - items.length));
    let acks = 0;
    for (const item of items) if (item.ack) acks++;
    this.#unackedQueued -= acks;
    this.#unackedInFlight += acks;
    this.#inFlight = items.length;
    this.#notifyRoom();

    const pending = items.map((i) => i.pending);
    let backoff = this.#opts.retryMinMs ?? 100;
    let result: BatchResult | null = null;
    while (result === null) {
      const started = performance.now();
      try {
        result = await processBatch(this.#opts.sql, pending, this.#opts.processor);
        metrics.batchDuration.observe((performance.now() - started) / 1000);
      } catch (error) {
        metrics.batchErrors.inc();
        if (this.#dbReady) {
          log.warn("batch failed; keeping it and retrying", {
            messages: items.length,
            error: (error as Error).message,
          });
        } else {
          log.debug("batch retry failed", { error: (error as Error).message });
        }
        this.#dbReady = false;
        if (this.#abandon) {
          // Unwritten and unacknowledged: the broker keeps QoS 1/2 messages and
          // redelivers them; QoS 0 ones are counted as dropped at shutdown.
          this.#unackedInFlight -= acks;
          this.#inFlight = 0;
          const qos0 = items.filter((i) => !i.ack).length;
          if (qos0 > 0) metrics.dropped.inc({ reason: "shutdown" }, qos0);
          return;
        }
        await this.#sleep(backoff);
        backoff = Math.min(backoff * 2, this.#opts.retryMaxMs ?? 5000);
      }
    }
    if (!this.#dbReady) log.info("database is back; batch written", { messages: items.length });
    this.#dbReady = true;

    try {
      await this.#opts.onCommitted?.(items, result);
    } catch (error) {
      log.error("after-commit hook failed", { error: (error as Error).message });
    }
    for (const item of items) item.ack?.();
    this.#unackedInFlight -= acks;
    this.#inFlight = 0;

    metrics.batches.inc();
    metrics.processed.inc(undefined, items.length);
    metrics.outcomes.inc({ outcome: "stored" }, result.outcomes.stored);
    metrics.outcomes.inc({ outcome: "rejected" }, result.outcomes.rejected);
    metrics.outcomes.inc({ outcome: "skipped" }, result.outcomes.skipped);
    metrics.batchSize.observe(items.length);
    metrics.stored.inc(undefined, result.stored);
    metrics.statuses.inc(undefined, result.statuses);
    for (const [reason, n] of Object.entries(result.skipped)) metrics.skipped.inc({ reason }, n);
    for (const [reason, n] of Object.entries(result.rejected)) metrics.rejected.inc({ reason }, n);
    const now = nowUs();
    for (const item of items) metrics.lag.observe((now - item.pending.inbound.receivedAtUs) / 1e6);
  }
}

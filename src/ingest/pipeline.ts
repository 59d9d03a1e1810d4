/**
 * The pipeline between a source and the processor: two bounded queues (device status
 * first), and a loop that forms batches and commits them, then acknowledges.
 *
 * When a batch is due is the flush policy's to say (src/ingest/flush_policy.ts); the loop
 * sleeps on an injected clock (src/ingest/timers.ts) until then or until an arrival
 * wakes it. A failed batch is kept and retried with backoff (src/ingest/retry.ts);
 * nothing is acknowledged before the transaction that holds it commits. Only transient
 * database errors (src/db/errors.ts) mark the database as down.
 *
 * Shutdown (`drain`) keeps its deadline even when a batch hangs: at the deadline the
 * batch in flight and everything queued are abandoned and counted, QoS 0 as
 * `dropped{shutdown}`, QoS 1/2 (left unacknowledged with the broker, which redelivers
 * them) as `discarded{shutdown}`.
 */
import { clearedByReason, type IngestMetrics } from "./metrics.ts";
import type { Logger } from "../log.ts";
import type { Ack, DecodedMessage } from "../core/message.ts";
import type { BatchResult } from "./processor.ts";
import type { Accounting } from "./accounting.ts";
import { BoundedQueue } from "./queue.ts";
import { messageBytes } from "./message_bytes.ts";
import { wallUs } from "../clock.ts";
import { isTransientDbError } from "../db/errors.ts";
import { FlushPolicy, type FlushSettings, type QueueState } from "./flush_policy.ts";
import { retryWithBackoff } from "./retry.ts";
import { type Clock, systemClock, type TimerHandle } from "./timers.ts";

/** A message waiting in a queue. */
export interface QueueItem {
  pending: DecodedMessage;
  /** Null for messages that need no acknowledgement (QoS 0, files). */
  ack: Ack | null;
  /** When queued, in ms on the pipeline's clock. */
  queuedAt: number;
  /** What the byte bounds count for it (src/ingest/message_bytes.ts). */
  bytes: number;
}

/** Options of the pipeline; the flush settings are the policy's (src/ingest/flush_policy.ts). */
export interface PipelineOptions extends FlushSettings {
  /**
   * Writes one batch and tells what became of each message: `processBatch` against the
   * database in `serve`; any function in the pipeline's own tests. Throws only when the
   * batch must be kept and retried (src/db/errors.ts says which errors those are).
   */
  write(batch: DecodedMessage[]): Promise<BatchResult>;
  /** Most bytes in one batch, as the queues count them (at least one message is taken). */
  maxBatchBytes?: number;
  queueSize: number;
  /** Most bytes in the data queue (src/ingest/message_bytes.ts); default: no byte bound. */
  queueBytes?: number;
  statusQueueSize: number;
  log: Logger;
  metrics: IngestMetrics;
  accounting: Accounting;
  /** The wait after a failed batch; it doubles with each failure, up to `retryMaxMs`. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Now and timers (default: the system's); tests move a `ManualClock`. */
  clock?: Clock;
}

/**
 * Called after each commit, before the acks are sent (the capture file and the
 * operations side listen here); one that fails is logged and the others still run.
 */
export type CommitListener = (items: QueueItem[], result: BatchResult) => void | Promise<void>;

/** Batches messages and writes them. */
export class Pipeline {
  readonly #opts: PipelineOptions;
  readonly #clock: Clock;
  readonly #policy: FlushPolicy;
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
  /** The batch being written, until it is acknowledged or abandoned. */
  #batch:
    | { items: QueueItem[]; acks: number; bytes: number; startedAt: number; abandoned: boolean }
    | null = null;
  #batchesTaken = 0;
  readonly #commitListeners: CommitListener[] = [];

  constructor(opts: PipelineOptions) {
    this.#opts = opts;
    this.#clock = opts.clock ?? systemClock;
    this.#policy = new FlushPolicy(opts);
    const sizeOf = (item: QueueItem) => item.bytes;
    const maxBytes = opts.queueBytes ?? Infinity;
    // The status queue may hold a quarter of the data queue's bytes (docs/performance.md).
    this.#status = new BoundedQueue(opts.statusQueueSize, { maxBytes: maxBytes / 4, sizeOf });
    this.#data = new BoundedQueue(opts.queueSize, { maxBytes, sizeOf });
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
  /** Bytes in the queues, as the byte bound counts them. */
  get queuedBytes(): number {
    return this.#status.bytes + this.#data.bytes;
  }
  /** The data queue's byte bound (Infinity: none). */
  get maxQueueBytes(): number {
    return this.#data.maxBytes;
  }
  /** Bytes in the batch being written (0: none). */
  get inFlightBytes(): number {
    return this.#batch?.bytes ?? 0;
  }
  /** The full queue and the bound it reached: what holds the source back (null: none). */
  get holdingBack(): { queue: "data" | "status"; by: "messages" | "bytes" } | null {
    const [data, status] = [this.#data.fullBy, this.#status.fullBy];
    return data ? { queue: "data", by: data } : status ? { queue: "status", by: status } : null;
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
    return this.#policy.ackFlushAt;
  }
  /** How long the oldest queued message has waited, in ms (0 when none is queued). */
  get oldestQueuedMs(): number {
    const oldest = this.#oldestQueuedAt();
    return oldest === Infinity ? 0 : this.#clock.now() - oldest;
  }
  /** False while the last batch attempt failed with a transient database error. */
  get dbReady(): boolean {
    return this.#dbReady;
  }
  /** How long the batch being written has been out of the queues, in ms (0: none). */
  get batchAgeMs(): number {
    return this.#batch ? this.#clock.now() - this.#batch.startedAt : 0;
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
  offer(pending: DecodedMessage, ack: Ack | null): boolean {
    const queue = pending.decoded.kind === "status" ? this.#status : this.#data;
    const bytes = messageBytes(pending);
    const item: QueueItem = { pending, ack, queuedAt: this.#clock.now(), bytes };
    if (!queue.push(item)) return false;
    this.#lastArrival = item.queuedAt;
    if (ack) this.#unackedQueued++;
    if (this.#policy.wakesOnArrival(this.#queueState(), ack !== null)) this.#wake?.();
    return true;
  }

  /** Resolves when both queues have room. */
  waitForRoom(): Promise<void> {
    if (!this.#status.full && !this.#data.full) return Promise.resolve();
    return new Promise((resolve) => this.#roomWaiters.push(resolve));
  }

  /** Is the queue this message would go to full? */
  isFull(kind: DecodedMessage["decoded"]["kind"]): boolean {
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
    let timer: TimerHandle | undefined;
    const deadline = new Promise<"deadline">((resolve) => {
      timer = this.#clock.setTimer(() => resolve("deadline"), deadlineMs);
    });
    try {
      const first = await Promise.race([this.#loop ?? Promise.resolve(), deadline]);
      if (first !== "deadline") return 0;
    } finally {
      this.#clock.clearTimer(timer);
    }
    return this.#abandonAll();
  }

  /**
   * `drain`, then the final accounting line (docs/delivery.md, "Where every message
   * ends"): every message the process received is in exactly one of its terms.
   * `beforeStopped` runs between the two, e.g. to write the last flood summaries, so that
   * "stopped" is the last line.
   */
  async shutdown(deadlineMs: number, beforeStopped?: () => void): Promise<number> {
    const { log, accounting, metrics } = this.#opts;
    const left = await this.drain(deadlineMs);
    beforeStopped?.();
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
      // Rows the re-processing after a registration deleted (src/replay/reprocess.ts).
      rejectsClearedByReason: clearedByReason(metrics),
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
    return this.#policy.delayUntilFlush(this.#queueState(), this.#clock.now());
  }

  #queueState(): QueueState {
    return {
      queued: this.queued,
      unacked: this.unacked,
      unackedQueued: this.#unackedQueued,
      oldestQueuedAt: this.#oldestQueuedAt(),
      lastArrivalAt: this.#lastArrival,
      stopping: this.#stopping,
    };
  }

  #oldestQueuedAt(): number {
    return Math.min(
      this.#status.peek()?.queuedAt ?? Infinity,
      this.#data.peek()?.queuedAt ?? Infinity,
    );
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: TimerHandle | undefined;
      const done = () => {
        if (timer !== undefined) this.#clock.clearTimer(timer);
        if (this.#wake === done) this.#wake = null;
        resolve();
      };
      if (Number.isFinite(ms)) timer = this.#clock.setTimer(done, Math.max(1, ms));
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
    // A batch holds at most batchSize messages and, past its first, maxBatchBytes (as
    // the queues count them): memory per batch stays bounded whatever the messages' size.
    let bytes = 0;
    const maxBytes = this.#opts.maxBatchBytes ?? Infinity;
    const fits = (item: QueueItem) => {
      if (bytes > 0 && bytes + item.bytes > maxBytes) return false;
      bytes += item.bytes;
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
    const batch = { items, acks, bytes, startedAt: this.#clock.now(), abandoned: false };
    this.#batch = batch;
    this.#batchesTaken++;
    this.#notifyRoom();

    const pending = items.map((i) => i.pending);
    let result: BatchResult;
    try {
      result = await retryWithBackoff(async () => {
        const started = this.#clock.now();
        const written = await this.#opts.write(pending);
        metrics.batchDuration.observe((this.#clock.now() - started) / 1000);
        return written;
      }, {
        firstDelayMs: this.#opts.retryMinMs ?? 100,
        maxDelayMs: this.#opts.retryMaxMs ?? 5000,
        // Abandoned at the shutdown deadline: already counted, nothing to retry.
        givenUp: () => batch.abandoned,
        onRetry: (error) => this.#batchFailed(error, items.length),
        sleep: (ms) => this.#sleep(ms),
      });
    } catch (error) {
      if (batch.abandoned) return;
      throw error; // not reached: a batch is retried until it commits or is abandoned
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

  /** A failed attempt at a batch, about to be retried: counted, and logged by its kind. */
  #batchFailed(error: unknown, messages: number): void {
    const { metrics, log } = this.#opts;
    metrics.batchErrors.inc();
    const message = (error as Error)?.message ?? String(error);
    if (!isTransientDbError(error)) {
      // Not the database being away: a bug (the processor turns data errors into
      // reject rows). Kept and retried all the same, never reported as a database
      // outage; a batch that never commits shows as a stalled writer on /readyz.
      log.error("batch failed with an unexpected error; keeping it and retrying", {
        messages,
        error: message,
      });
    } else if (this.#dbReady) {
      log.warn("batch failed; keeping it and retrying", { messages, error: message });
      this.#dbReady = false;
    } else {
      log.debug("batch retry failed", { error: message });
    }
  }
}

/**
 * When the pipeline writes a batch (docs/scaling.md, "The in-flight window comes first").
 * Pure: it looks at the queues as the pipeline tells it and at the time it is given, and
 * keeps one thing, the broker's in-flight window as learnt so far.
 *
 * A batch is flushed when it is full, when its oldest message has waited the batch
 * interval, and, for messages awaiting an acknowledgement, when the broker's in-flight
 * window is about to run out or when no message has arrived for a moment (the broker may
 * be waiting for our acks: a window smaller than configured looks exactly like that).
 * The window is learnt: a stall at U unacknowledged messages means the broker's window is
 * U, and the next batches are flushed as soon as U wait; more than that arriving while a
 * batch is written raises it again, up to `ackWindow`.
 */

/** The settings the policy follows. */
export interface FlushSettings {
  batchSize: number;
  batchIntervalMs: number;
  /** Flush when this many messages await acknowledgement (the broker's window). */
  ackWindow: number;
  /** Flush unacknowledged messages once nothing arrived for this long. */
  ackIdleMs: number;
}

/** The queues as the policy sees them; times in ms on the pipeline's clock. */
export interface QueueState {
  /** Messages in both queues. */
  queued: number;
  /** Messages received and not yet acknowledged, queued or in flight. */
  unacked: number;
  /** Of those, the ones still queued. */
  unackedQueued: number;
  /** When the oldest queued message was queued (Infinity: none). */
  oldestQueuedAt: number;
  /** When the last message was queued. */
  lastArrivalAt: number;
  /** Shutting down: write whatever is queued now. */
  stopping: boolean;
}

/** Decides when to flush, and learns the broker's window. */
export class FlushPolicy {
  readonly #settings: FlushSettings;
  /** Unacknowledged messages at which a batch is flushed: the window as learnt so far. */
  #flushAt: number;

  constructor(settings: FlushSettings) {
    this.#settings = settings;
    this.#flushAt = settings.ackWindow;
  }

  /** Unacknowledged messages that make a batch flush now: the broker's window as learnt. */
  get ackFlushAt(): number {
    return this.#flushAt;
  }

  /**
   * Whether a message just queued must wake the loop: when it has to act on it now, when
   * it was idle, or when this is the first message awaiting an ack. The loop may be
   * asleep until the batch interval of a QoS 0 message ahead of it, and the ack-idle
   * deadline must start now (otherwise a QoS 1 reading behind a QoS 0 one waited the
   * whole interval). Otherwise its timer is already due.
   */
  wakesOnArrival(state: QueueState, acknowledged: boolean): boolean {
    return state.queued === 1 || state.queued >= this.#settings.batchSize ||
      state.unacked >= this.#flushAt || (acknowledged && state.unackedQueued === 1);
  }

  /**
   * How long until the next batch is due, in ms: 0 now, Infinity when nothing is queued.
   * Learns the window when a batch is due because of it.
   */
  delayUntilFlush(state: QueueState, now: number): number {
    const { batchSize, batchIntervalMs, ackWindow, ackIdleMs } = this.#settings;
    if (state.stopping) return 0;
    if (state.queued === 0) return Infinity;
    const unacked = state.unacked;
    if (state.queued >= batchSize || unacked >= this.#flushAt) {
      // More arrived than the learnt window while the last batch was written: the
      // broker's window is at least that.
      if (unacked > this.#flushAt) this.#flushAt = Math.min(ackWindow, unacked);
      return 0;
    }
    const due = state.oldestQueuedAt + batchIntervalMs;
    if (state.unackedQueued > 0) {
      const idleDue = state.lastArrivalAt + ackIdleMs;
      if (idleDue < due) {
        if (idleDue > now) return idleDue - now;
        // The broker stopped sending at `unacked` awaiting their acks: its window (here
        // always below the flush point, so never above the configured window).
        this.#flushAt = Math.min(ackWindow, Math.max(1, unacked));
        return 0;
      }
    }
    return Math.max(0, due - now);
  }
}

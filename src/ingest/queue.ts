/**
 * A bounded FIFO queue. `push` refuses when full instead of growing: what to do then
 * (hold back the source, or drop and count) is the caller's policy, not the queue's.
 *
 * Bounded by count and, given `maxBytes` and `sizeOf`, by bytes: full when either
 * bound is reached. A push is refused only when the queue is already full, so a queue
 * holds at most `maxBytes` plus one item (an item larger than the whole bound still
 * passes through an empty queue), and "not full" always means the next push succeeds,
 * which the source's wait for room relies on (src/mqtt/source.ts `holdUntilRoom`).
 */
export interface ByteBound<T> {
  maxBytes: number;
  /** An item's size; asked once per push and once per take, so it must not change. */
  sizeOf(item: T): number;
}

export class BoundedQueue<T> {
  #items: (T | undefined)[] = [];
  #head = 0;
  #bytes = 0;
  readonly capacity: number;
  readonly maxBytes: number;
  readonly #sizeOf: ((item: T) => number) | null;

  constructor(capacity: number, bytes?: ByteBound<T>) {
    this.capacity = capacity;
    this.maxBytes = bytes?.maxBytes ?? Infinity;
    this.#sizeOf = bytes?.sizeOf ?? null;
  }

  get length(): number {
    return this.#items.length - this.#head;
  }

  /** Bytes of the items queued (0 without a byte bound). */
  get bytes(): number {
    return this.#bytes;
  }

  get full(): boolean {
    return this.fullBy !== null;
  }

  /** Which bound makes the queue full, or null when it has room. */
  get fullBy(): "messages" | "bytes" | null {
    if (this.length >= this.capacity) return "messages";
    if (this.#bytes >= this.maxBytes) return "bytes";
    return null;
  }

  /** Adds at the tail; false when full. */
  push(item: T): boolean {
    if (this.full) return false;
    this.#items.push(item);
    if (this.#sizeOf) this.#bytes += this.#sizeOf(item);
    return true;
  }

  /** The oldest item, without removing it. */
  peek(): T | undefined {
    return this.#items[this.#head];
  }

  /**
   * Removes and returns up to `n` items from the head; with `fits`, stops at the first
   * item it refuses (it is asked in order, and should accept the first).
   */
  take(n: number, fits?: (item: T) => boolean): T[] {
    let end = Math.min(this.#head + n, this.#items.length);
    if (fits) {
      let i = this.#head;
      while (i < end && fits(this.#items[i] as T)) i++;
      end = i;
    }
    const out = this.#items.slice(this.#head, end) as T[];
    // The taken slots are cleared so that the items' memory goes with them, not at the
    // next compaction.
    this.#items.fill(undefined, this.#head, end);
    this.#head = end;
    if (this.#sizeOf) { for (const item of out) this.#bytes -= this.#sizeOf(item); }
    if (this.length === 0) this.#bytes = 0;
    // Compact once the consumed prefix dominates, so memory follows the live length.
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return out;
  }

  /** Removes every item for which `drop` returns true; returns how many. */
  removeWhere(drop: (item: T) => boolean): number {
    const kept = (this.#items.slice(this.#head) as T[]).filter((item) => !drop(item));
    const removed = this.length - kept.length;
    this.#items = kept;
    this.#head = 0;
    if (this.#sizeOf) {
      this.#bytes = 0;
      for (const item of kept) this.#bytes += this.#sizeOf(item);
    }
    return removed;
  }
}

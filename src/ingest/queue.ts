/**
 * A bounded FIFO queue. `push` refuses when full instead of growing: what to do then
 * (hold back the source, or drop and count) is the caller's policy, not the queue's.
 */
export class BoundedQueue<T> {
  #items: (T | undefined)[] = [];
  #head = 0;
  readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  get length(): number {
    return this.#items.length - this.#head;
  }

  get full(): boolean {
    return this.length >= this.capacity;
  }

  /** Adds at the tail; false when full. */
  push(item: T): boolean {
    if (this.full) return false;
    this.#items.push(item);
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
    this.#head = end;
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
    return removed;
  }
}

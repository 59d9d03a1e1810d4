/**
 * What a command has opened, closed in reverse order at the end, each in a bounded time:
 * shutdown must keep its deadline even when a broker or a database does not answer.
 */
import type { Logger } from "./log.ts";

/** A list of named close functions, closed last-in first-out. */
export class Closers {
  readonly #closers: { name: string; close: () => Promise<void> | void }[] = [];
  readonly #log: Logger;
  readonly #timeoutMs: number;

  /** Each close gets at most `timeoutMs`; one that takes longer is logged by name and left. */
  constructor(log: Logger, timeoutMs = 3000) {
    this.#log = log;
    this.#timeoutMs = timeoutMs;
  }

  /**
   * Adds something to close. `name` says what it is in the warning of a close that does
   * not finish in time ("the database pool"), so the person reading it knows where the
   * shutdown hung.
   */
  push(name: string, close: () => Promise<void> | void): void {
    this.#closers.push({ name, close });
  }

  /** Closes everything, newest first; never throws. */
  async closeAll(): Promise<void> {
    while (this.#closers.length > 0) {
      const { name, close } = this.#closers.pop()!;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), this.#timeoutMs);
      });
      const closing = (async () => await close())().catch(() => {});
      const result = await Promise.race([closing, timeout]);
      clearTimeout(timer);
      if (result === "timeout") {
        this.#log.warn(`${name} did not close in time; moving on`, {
          component: name,
          timeout_ms: this.#timeoutMs,
        });
      }
    }
  }
}

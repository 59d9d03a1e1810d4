/**
 * Warnings for floods: the first event of a kind is logged at once, later ones within the
 * interval are counted and reported together in one line when the interval ends. A
 * device sending ten thousand bad messages a second costs one log line per reason per
 * interval, not ten thousand.
 */
import type { Logger } from "./log.ts";

/** A rate-limited warning channel. */
export interface FloodLog {
  /**
   * Records one event (or `n`) of kind `key`. `fields` describe the latest example; they
   * go into the line with the count.
   */
  note(key: string, msg: string, fields?: Record<string, unknown>, n?: number): void;
  /** Writes the pending counts now and stops the timer. */
  close(): void;
}

interface Pending {
  msg: string;
  fields: Record<string, unknown> | undefined;
  count: number;
}

/**
 * Creates a flood log writing warnings to `log`, at most one line per key per
 * `intervalMs`.
 *
 * @example
 * ```ts
 * const flood = createFloodLog(log, 10_000);
 * flood.note("reject:bad_payload", "messages rejected", { reason: "bad_payload", topic });
 * flood.close();
 * ```
 */
export function createFloodLog(log: Logger, intervalMs: number): FloodLog {
  // Keys seen in the current interval: their first event was already written.
  let seen = new Set<string>();
  const pending = new Map<string, Pending>();
  let timer: ReturnType<typeof setTimeout> | null = null;

  const flush = () => {
    timer = null;
    for (const [key, p] of pending) {
      log.warn(p.msg, { ...p.fields, key, count: p.count, interval_s: intervalMs / 1000 });
    }
    // A key that was quiet for a whole interval logs its next event at once again.
    seen = new Set(pending.keys());
    pending.clear();
    if (seen.size > 0) timer = setTimeout(flush, intervalMs);
  };

  return {
    note(key, msg, fields, n = 1) {
      if (!seen.has(key)) {
        seen.add(key);
        log.warn(msg, { ...fields, key, count: n });
        timer ??= setTimeout(flush, intervalMs);
        return;
      }
      const p = pending.get(key);
      if (p) {
        p.count += n;
        p.fields = fields;
        p.msg = msg;
      } else {
        pending.set(key, { msg, fields, count: n });
      }
    },
    close() {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      for (const [key, p] of pending) {
        log.warn(p.msg, { ...p.fields, key, count: p.count, interval_s: intervalMs / 1000 });
      }
      pending.clear();
      seen.clear();
    },
  };
}

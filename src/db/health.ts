/**
 * Is the database reachable? The pipeline only finds out when it writes a batch, and a
 * quiet system writes none; so a probe runs `select 1` every interval. One probe at a
 * time: a probe that has not answered within the timeout counts as down (a black-holed
 * connection can hang far longer than any client timeout). A committed write is an
 * answer too (`answered`): readiness follows the writer at once when the database comes
 * back, instead of waiting up to an interval for the next probe (docs/operations.md).
 */
import type postgres from "postgres";

/** A running probe. */
export interface DatabaseProbe {
  /** True when the last probe answered in time. */
  readonly up: boolean;
  /** Probes now (also called on each interval); resolves with the result. */
  check(): Promise<boolean>;
  /**
   * The database just answered another query (a batch committed): up from now on, and a
   * probe sent before this that fails later does not count.
   */
  answered(): void;
  stop(): void;
}

/**
 * Starts probing `sql` every `intervalMs`; `onChange` hears of each transition.
 *
 * @example
 * ```ts
 * const probe = startDatabaseProbe(sql, { intervalMs: 5000, timeoutMs: 3000 });
 * probe.up; // true while select 1 answers
 * probe.stop();
 * ```
 */
export function startDatabaseProbe(
  sql: postgres.Sql,
  opts: { intervalMs: number; timeoutMs: number; onChange?: (up: boolean) => void },
): DatabaseProbe {
  let up = true;
  let busy = false;
  let stopped = false;
  // Bumped by `answered`: a probe result is older evidence than an answer that came
  // after the probe was sent (a probe hung until its timeout while a batch committed).
  let answers = 0;

  const set = (value: boolean) => {
    if (value !== up) {
      up = value;
      opts.onChange?.(value);
    }
  };

  const check = async (): Promise<boolean> => {
    // A hung probe keeps its slot until it settles, so probes never pile up.
    if (busy) return up;
    busy = true;
    const answersBefore = answers;
    const query = sql`select 1`.then(() => true, () => false);
    query.then(() => busy = false);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), opts.timeoutMs);
    });
    const ok = await Promise.race([query, timeout]);
    clearTimeout(timer);
    if (stopped || answers !== answersBefore) return up;
    set(ok);
    return ok;
  };

  const interval = setInterval(() => void check(), opts.intervalMs);
  return {
    get up() {
      return up;
    },
    check,
    answered() {
      answers++;
      if (!stopped) set(true);
    },
    stop() {
      stopped = true;
      clearInterval(interval);
    },
  };
}

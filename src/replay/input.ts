/**
 * The part of a replay that is the same whatever it writes to: bad lines are reported
 * and counted (or stop the run under --strict), messages outside the filters are
 * counted, and the rest come out a chunk at a time.
 */
import type { ReadBadLine, ReadItem } from "../capture/reader.ts";
import type { Inbound } from "../core/message.ts";
import type { ReplayTotals } from "./totals.ts";

/** How input is selected. */
export interface SelectOptions {
  /** False for messages outside the filters (--since, --until, --topic). */
  accept: (inbound: Inbound) => boolean;
  /** Stop at the first bad line. */
  strict: boolean;
  onBadLine: (bad: ReadBadLine) => void;
  /** Called after each chunk of input. */
  onProgress?: () => void;
}

/** Yields the accepted messages of `input`, a chunk at a time; counts into `totals`. */
export async function* selectMessages(
  input: AsyncIterable<ReadItem[]>,
  opts: SelectOptions,
  totals: ReplayTotals,
): AsyncGenerator<Inbound[]> {
  for await (const items of input) {
    const accepted: Inbound[] = [];
    for (const item of items) {
      if (item.kind === "bad") {
        totals.badLines++;
        opts.onBadLine(item);
        if (opts.strict) {
          totals.stoppedAt = `${item.source}:${item.line}`;
          if (accepted.length > 0) yield accepted;
          return;
        }
      } else {
        totals.messages++;
        if (opts.accept(item.inbound)) accepted.push(item.inbound);
        else totals.filtered++;
      }
    }
    if (accepted.length > 0) yield accepted;
    opts.onProgress?.();
  }
}

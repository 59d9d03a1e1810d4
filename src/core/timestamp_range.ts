/**
 * The range of device timestamps feedline believes, and why one outside it was refused: a
 * `bad_timestamp` reject says "before 2000" for a clock that was never set (`"ts": 0`), not
 * "unparsable" (docs/topics-and-payloads.md, reject reasons).
 */

// Earliest device timestamp we believe: clocks that were never set report 1970.
export const MIN_TS_US = Date.UTC(2000, 0, 1) * 1000;
// Latest: the end of year 9999, the last one ISO 8601 and PostgreSQL's timestamptz
// formats print in four digits. Beyond it JavaScript's Date cannot even format the value
// (a 1e19 timestamp once threw RangeError out of decode), so it is refused here, as text.
export const MAX_TS_US = Date.UTC(9999, 11, 31, 23, 59, 59, 999) * 1000;

/** A number as JSON or as text (`1767225600`, `1.7e9`). */
export const NUMBER_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** Epoch seconds, milliseconds or microseconds (by magnitude) as µs, unchecked. */
export function epochMagnitudeToUs(n: number): number {
  // Seconds until the year 5138, milliseconds until 5138, then microseconds.
  return n < 1e11 ? n * 1e6 : n < 1e14 ? n * 1e3 : n;
}

/**
 * The detail of a `bad_timestamp` reject for `input`, a timestamp `parseTimestamp`
 * refused; `preview` is how the message shows it.
 */
export function badTimestampDetail(input: unknown, preview: string): string {
  const text = typeof input === "string" ? input.trim() : null;
  const n = typeof input === "number" ? input : text && NUMBER_RE.test(text) ? Number(text) : NaN;
  if (Number.isFinite(n)) {
    const us = n <= 0 ? 0 : epochMagnitudeToUs(n);
    if (us < MIN_TS_US) return `timestamp before 2000: ${preview} (a clock that was never set?)`;
    if (us > MAX_TS_US) return `timestamp after 9999: ${preview}`;
  }
  const year = text === null ? null : /^(\d{4})-\d{2}-\d{2}/.exec(text)?.[1];
  if (year && Number(year) < 2000) {
    return `timestamp before 2000: ${preview} (a clock that was never set?)`;
  }
  return `unparsable timestamp: ${preview}`;
}

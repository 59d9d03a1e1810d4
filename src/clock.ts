/**
 * The receive clock. (feed_id, created_at) identifies a reading, and a reading without
 * a device timestamp is stamped with its receive time; a backlog can arrive in one burst
 * within one microsecond, so the receive clock is strictly increasing: no two messages
 * received by one process share a stamp, and re-processing a message (a retried batch,
 * a replay of its capture) stamps it exactly as before, which keeps that idempotent.
 *
 * Several processes (a shared subscription group) each lease a lane L of N in the
 * database (src/db/ingest_lanes.ts) and call `setLane(L, N)`: from then on the clock
 * stamps only microseconds ≡ L (mod N), so two processes holding different lanes can
 * never produce the same stamp (docs/delivery.md, "Duplicates and idempotence").
 */

let lastUs = 0;
let lane = 0;
let lanes = 1;

/**
 * Spacing of the extra stamps one message takes (src/core/decode.ts
 * `spreadReceiveStamps`): the number of clock lanes of a shared group
 * (src/db/ingest_lanes.ts `LANES`), so a stamp plus a multiple of it stays in its lane.
 * A constant, not the lane count in use, so a message is stamped alike by a process with
 * lanes and one without (a replay of its capture).
 */
export const RECEIVE_STAMP_STEP_US = 16;

/** Wall-clock time in whole microseconds since the Unix epoch (not a stamp: may repeat). */
export function wallUs(): number {
  return Date.now() * 1000 + Math.floor((performance.now() % 1) * 1000);
}

/**
 * Wall-clock time in whole microseconds since the Unix epoch, strictly increasing within
 * the process and ≡ lane (mod lanes). Date.now() keeps it on the wall clock over weeks of
 * uptime (a monotonic clock drifts from it); performance.now() supplies the
 * sub-millisecond part. At more than a million / `lanes` messages a second it runs ahead
 * of the wall clock, then waits for it.
 *
 * @example
 * ```ts
 * const a = nowUs(), b = nowUs(); // b > a
 * ```
 */
export function nowUs(): number {
  const us = wallUs();
  let next = us > lastUs ? us : lastUs + 1;
  if (lanes > 1) next += (lane - (next % lanes) + lanes) % lanes;
  lastUs = next;
  return next;
}

/**
 * Marks the stamps up to `us` as given: a message that was stamped `t` and keeps stamps
 * up to `us` for its readings (src/core/decode.ts `lastReceiveOffsetUs`) calls this, and
 * the next stamp is above `us` (and in the lane).
 */
export function reserveStampsThrough(us: number): void {
  if (us > lastUs) lastUs = us;
}

/**
 * From now on, stamp only microseconds ≡ `laneNumber` (mod `laneCount`), and none at or
 * below `floorUs` (the highest stamp a previous holder of the lane recorded). Stamps stay
 * strictly increasing across the change. `setLane(0, 1)` turns lanes off.
 */
export function setLane(laneNumber: number, laneCount: number, floorUs = 0): void {
  if (
    !Number.isInteger(laneCount) || laneCount < 1 || !Number.isInteger(laneNumber) ||
    laneNumber < 0 || laneNumber >= laneCount
  ) {
    throw new RangeError(`lane ${laneNumber} of ${laneCount}`);
  }
  lane = laneNumber;
  lanes = laneCount;
  if (floorUs > lastUs) lastUs = floorUs;
}

/** The lane in use and the highest stamp given so far (recorded with the lease). */
export function clockState(): { lane: number; lanes: number; lastUs: number } {
  return { lane, lanes, lastUs };
}

/**
 * Makes a sequence of receive times strictly increasing, in order: for sources whose
 * times may repeat (a capture written with millisecond precision). Deterministic, so
 * the same file stamps the same way every time.
 */
export class MonotonicStamper {
  #last = 0;
  stamp(us: number): number {
    this.#last = us > this.#last ? us : this.#last + 1;
    return this.#last;
  }
  /** As `reserveStampsThrough`: the next stamp is above `us`. */
  reserveThrough(us: number): void {
    if (us > this.#last) this.#last = us;
  }
}

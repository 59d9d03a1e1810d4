/**
 * When did each batch commit? PostgreSQL can tell without touching the code under test:
 * every row carries the id of the transaction that wrote it (`xmin`), and a snapshot
 * (`pg_current_snapshot()`: xmin:xmax:xip) says which transactions have finished. A
 * transaction X is finished at a snapshot when X < xmax and X is not in xip; other
 * sessions' long transactions do not blur this, unlike the snapshot's xmin. Polling
 * snapshots every few milliseconds during a run and looking each batch's xid up
 * afterwards gives its commit time to within one poll interval.
 *
 * Row xmin is a 32-bit xid; snapshots hold 64-bit xid8 values: compared modulo 2^32,
 * which is exact unless the run crosses an xid epoch.
 */
import type postgres from "postgres";
import { wallMs } from "./publisher.ts";

interface Snapshot {
  atMs: number;
  xmax: number;
  xip: Set<number>;
}

const MOD = 2 ** 32;

function parseSnapshot(text: string, atMs: number): Snapshot {
  const [, xmax, xip] = text.split(":");
  return {
    atMs,
    xmax: Number(BigInt(xmax) % BigInt(MOD)),
    xip: new Set(xip ? xip.split(",").map((x) => Number(BigInt(x) % BigInt(MOD))) : []),
  };
}

/** A running snapshot poller. */
export interface CommitClock {
  /** Stops polling; resolves when the last poll finished. */
  stop(): Promise<void>;
  /** Wall-clock ms of the first poll that saw `xid` finished, or null. */
  commitTimeOf(xid: number): number | null;
  /** Milliseconds between polls, measured. */
  meanIntervalMs(): number;
}

/** Polls `pg_current_snapshot()` every `intervalMs` on a connection of its own. */
export function startCommitClock(sql: postgres.Sql, intervalMs = 5): CommitClock {
  const snaps: Snapshot[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const [row] = await sql<{ s: string }[]>`select pg_current_snapshot()::text as s`;
      snaps.push(parseSnapshot(row.s, wallMs()));
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  const finished = (s: Snapshot, xid: number) => {
    // xid < xmax modulo 2^32 (PostgreSQL's own TransactionIdPrecedes).
    const diff = (xid - s.xmax + MOD) % MOD;
    return diff >= MOD / 2 && !s.xip.has(xid);
  };
  return {
    async stop() {
      running = false;
      await loop;
    },
    commitTimeOf(xid) {
      // Finished-ness only moves forward in time: binary search the first poll.
      let lo = 0;
      let hi = snaps.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (finished(snaps[mid], xid)) hi = mid;
        else lo = mid + 1;
      }
      return lo < snaps.length ? snaps[lo].atMs : null;
    },
    meanIntervalMs() {
      return snaps.length < 2
        ? 0
        : (snaps[snaps.length - 1].atMs - snaps[0].atMs) / (snaps.length - 1);
    },
  };
}

/**
 * Clock lanes leased in PostgreSQL (sql/005_ingest_lanes.sql). Instances of one shared
 * subscription group each hold a lane L of `LANES` and stamp receive times ≡ L (mod
 * LANES) (src/clock.ts), so two instances never give two readings of one feed the same
 * key. A lease is a row with an expiry, renewed by single UPDATE statements: no
 * advisory locks or other session state, so it works through a transaction-mode pooler
 * (PgBouncer).
 *
 * - Taken before subscribing (`leaseLane` resolves once the clock is set).
 * - Renewed every `renewMs`; a renewal that fails (database away) is retried at the
 *   next tick. Should the lease have expired meanwhile and another instance taken the
 *   lane, a new one is taken and a warning logged.
 * - Released on shutdown, recording the highest stamp given: the next holder starts
 *   above it (and above what an expired holder recorded, plus the time since).
 */
import type postgres from "postgres";
import { clockState, setLane } from "../clock.ts";
import { FeedlineError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { describePgError } from "./database.ts";

/** How many lanes there are: how many instances can share a group. Also in sql/005. */
export const LANES = 16;

/** The clock the lanes steer: src/clock.ts, or a stand-in in tests. */
export interface LaneClock {
  setLane(lane: number, lanes: number, floorUs: number): void;
  lastUs(): number;
}

const processClock: LaneClock = {
  setLane,
  lastUs: () => clockState().lastUs,
};

/** Options of `leaseLane`. */
export interface LaneLeaseOptions {
  /** The MQTT client id, stored for people reading the table. */
  holder: string;
  log: Logger;
  /** A lease not renewed for this long may be taken by another instance. */
  ttlMs?: number;
  renewMs?: number;
  clock?: LaneClock;
}

/** A held lane. */
export interface LaneLease {
  /** The lane now held (changes if the lease was lost and another taken). */
  readonly lane: number;
  /** Stops renewing and frees the lane. Never throws. */
  release(): Promise<void>;
}

/**
 * Takes a free lane (one never held, released, or expired longest ago), sets the clock
 * to it and keeps it renewed. Throws NO_FREE_LANE when all `LANES` are held.
 */
export async function leaseLane(sql: postgres.Sql, opts: LaneLeaseOptions): Promise<LaneLease> {
  const ttlMs = opts.ttlMs ?? 30_000;
  const renewMs = opts.renewMs ?? 5_000;
  const clock = opts.clock ?? processClock;
  const token = crypto.randomUUID();
  const { log, holder } = opts;

  const acquire = async (): Promise<number> => {
    // One statement: concurrent acquirers skip each other's locked rows.
    const rows = await sql<{ lane: number; floor_us: string }[]>`
      update ingest_lanes l
      set holder = ${holder}, token = ${token}, renewed_at = now(),
          expires_at = now() + ${ttlMs} * interval '1 millisecond'
      from (select lane, stamped_until_us, renewed_at from ingest_lanes
            where lane < ${LANES} and (expires_at < now() or token = ${token})
            order by expires_at, lane limit 1 for update skip locked) p
      where l.lane = p.lane
      returning l.lane,
        (p.stamped_until_us + case when p.renewed_at is null then 0 else
          (extract(epoch from now() - p.renewed_at) * 1e6)::int8 end)::text as floor_us`;
    if (rows.length === 0) {
      const [{ held }] = await sql<{ held: number }[]>`
        select count(*)::int as held from ingest_lanes where expires_at >= now()`;
      throw new FeedlineError(
        "NO_FREE_LANE",
        `no free clock lane: ${held} of ${LANES} are held by live instances ` +
          `(select * from ingest_lanes); at most ${LANES} serve processes can share one ` +
          `database with --shared-group`,
      );
    }
    const lane = rows[0].lane;
    clock.setLane(lane, LANES, Number(rows[0].floor_us));
    return lane;
  };

  let lane = await acquire();
  log.info("clock lane leased", { lane, lanes: LANES, holder });
  let released = false;
  let failing = false;
  let renewing: Promise<void> = Promise.resolve();

  const renew = async () => {
    try {
      const rows = await sql`
        update ingest_lanes
        set expires_at = now() + ${ttlMs} * interval '1 millisecond', renewed_at = now(),
            stamped_until_us = greatest(stamped_until_us, ${clock.lastUs()})
        where lane = ${lane} and token = ${token}
        returning lane`;
      if (released) return;
      if (failing) log.info("clock lane lease renewed again", { lane });
      failing = false;
      if (rows.length > 0) return;
      const lost = lane;
      lane = await acquire();
      log.warn(
        "clock lane lease expired while the database was away and another instance took it; " +
          "took another lane",
        { lost, lane, lanes: LANES, holder },
      );
    } catch (error) {
      if (released) return;
      if (!failing) {
        log.warn("cannot renew the clock lane lease; retrying", {
          lane,
          error: describePgError(error),
          expires_in_ms: ttlMs,
        });
      }
      failing = true;
    }
  };
  const timer = setInterval(() => {
    renewing = renewing.then(renew);
  }, renewMs);

  return {
    get lane() {
      return lane;
    },
    async release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      await renewing;
      try {
        await sql`
          update ingest_lanes
          set token = null, holder = null, expires_at = '-infinity', renewed_at = null,
              stamped_until_us = greatest(stamped_until_us, ${clock.lastUs()})
          where lane = ${lane} and token = ${token}`;
        log.info("clock lane released", { lane });
      } catch (error) {
        log.warn("cannot release the clock lane; it frees itself when its lease expires", {
          lane,
          error: describePgError(error),
        });
      }
    },
  };
}

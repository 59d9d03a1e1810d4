/**
 * Clock lanes leased in PostgreSQL (sql/005_ingest_lanes.sql). Instances of one shared
 * subscription group each hold a lane L of `LANES` and stamp receive times ≡ L (mod
 * LANES) (src/clock.ts), so two instances never give two readings of one feed the same
 * key. A lease is a row with an expiry, renewed by single UPDATE statements: no
 * advisory locks or other session state, so it works through a transaction-mode pooler
 * (PgBouncer).
 *
 * - Taken before subscribing (`leaseLane` resolves once the clock is set). A start takes
 *   back a lane its client id (`holder`) still holds, expired or not: a process that
 *   crash-loops (SIGKILL, restart) keeps one lane instead of leasing a new one per start
 *   while the dead ones' leases run out, which locked a group out after 16 quick
 *   restarts. Two live processes never share a client id for long: the broker lets one
 *   session per client id connect, and the older process, finding its lease gone at its
 *   next renewal, takes another lane.
 * - Renewed every `renewMs`; a renewal that fails (database away) is retried at the
 *   next tick. Should the lease have expired meanwhile and another instance taken the
 *   lane, a new one is taken and a warning logged.
 * - Raised in every batch transaction (`recordStamps`) to the highest stamp given.
 * - Released on shutdown, recording the highest stamp given: the next holder starts
 *   above it.
 *
 * Why the next holder never repeats a stored stamp, even after a SIGKILL (no release):
 * a stamp matters only once it is stored (a reading's, status's or reject's key); a
 * message stamped but never committed is redelivered by the broker and stamped anew
 * (QoS 1/2) or lost with the process (QoS 0).
 * `recordStamps` raises the lane's `stamped_until_us` to the clock's highest stamp in the
 * same transaction that stores the batch, as its first statement, so the mark commits if
 * and only if the batch does, and covers every stamp in it. A new holder reads the mark
 * with `for update skip locked`: a batch of the killed holder still committing holds the
 * row, so its lane is not taken until that batch has committed or rolled back (another
 * lane is taken meanwhile). The floor adds the time since the mark was written, which
 * also covers stamps given but not stored (QoS 0 copies written to a capture as dropped)
 * as long as the old clock did not run ahead of the wall clock (docs/delivery.md,
 * "Several instances never stamp alike").
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
  /**
   * Runs a batch's `work` in its transaction `tx`, first raising the lane's mark to the
   * highest stamp given so far (src/ingest/processor.ts calls it as `inTransaction`), so
   * a holder killed after the commit has the batch's stamps below its lane's mark.
   */
  recordStamps(tx: postgres.TransactionSql, work: () => Promise<void>): Promise<void>;
  /** Stops renewing and frees the lane. Never throws. */
  release(): Promise<void>;
}

/**
 * Takes back the lane `holder` holds, else a free lane (one never held, released, or
 * expired longest ago), sets the clock to it and keeps it renewed. Throws NO_FREE_LANE
 * when all `LANES` are held by others.
 */
export async function leaseLane(sql: postgres.Sql, opts: LaneLeaseOptions): Promise<LaneLease> {
  const ttlMs = opts.ttlMs ?? 30_000;
  const renewMs = opts.renewMs ?? 5_000;
  const clock = opts.clock ?? processClock;
  const token = crypto.randomUUID();
  const { log, holder } = opts;

  /**
   * `takeBack`: at start, a lane held under our client id is ours (see the module doc);
   * after losing a lease, only a free one is (the taker may be a restart of ours).
   */
  const acquire = async (takeBack: boolean): Promise<{ lane: number; tookBack: boolean }> => {
    // One statement: concurrent acquirers skip each other's locked rows (and a lane whose
    // killed holder's last batch is still committing: see the module doc).
    const rows = await sql<{ lane: number; floor_us: string; took_back: boolean }[]>`
      update ingest_lanes l
      set holder = ${holder}, token = ${token}, renewed_at = now(),
          expires_at = now() + ${ttlMs} * interval '1 millisecond'
      from (select lane, stamped_until_us, renewed_at, expires_at >= now() as live
            from ingest_lanes
            where lane < ${LANES} and (expires_at < now() or token = ${token} or
                  (${takeBack}::boolean and holder = ${holder}))
            order by (${takeBack}::boolean and holder is not distinct from ${holder}) desc,
                     expires_at, lane
            limit 1 for update skip locked) p
      where l.lane = p.lane
      returning l.lane, p.live as took_back,
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
    return { lane, tookBack: rows[0].took_back };
  };

  const first = await acquire(true);
  let lane = first.lane;
  // `taken_back`: the lease of an earlier process with this client id had not expired
  // yet (a restart after a crash).
  log.info("clock lane leased", { lane, lanes: LANES, holder, taken_back: first.tookBack });
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
      lane = (await acquire(false)).lane;
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
    async recordStamps(tx, work) {
      // First in the transaction: the row stays locked until the batch commits (see the
      // module doc). Sets renewed_at too: the floor's "time since" counts from here. Not
      // awaited before the work starts: the connection runs its statements in order, so
      // the batch's first statement goes out with it instead of a round trip later.
      const mark = tx`
        update ingest_lanes
        set stamped_until_us = greatest(stamped_until_us, ${clock.lastUs()}), renewed_at = now()
        where lane = ${lane} and token = ${token}`.execute();
      await Promise.all([mark, work()]);
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

/**
 * The mover of last values (docs/performance.md, "Fifth round: last values appended, then
 * moved"): batches append each feed's newest reading to `feed_last_values_pending`
 * (sql/018), and this carries them into `feed_last_values` in one statement, forward only,
 * so each feed's row is updated once per move instead of once per batch.
 *
 * One statement, in its own implicit transaction, so it needs no session state and works
 * through a transaction pooler: it takes a transaction-scoped advisory lock without
 * waiting (another instance moving now: this one moves nothing and tries again next
 * time), deletes the pending rows its snapshot sees, and updates each feed's row with the
 * newest of them where that is newer. A batch that commits while it runs is not in its
 * snapshot: its rows stay pending for the next move. A move that fails or is rolled back
 * loses nothing either: the pending rows are still there.
 */
import type postgres from "postgres";
import type { Logger } from "../log.ts";

/** The advisory lock of the move ("fl" 018). */
const MOVE_LOCK_KEY = 7_300_412_018;

/** What one move did. */
export interface LastValuesMoved {
  /** False when another instance held the lock: nothing was moved. */
  ours: boolean;
  /** Pending rows taken. */
  taken: number;
  /** Feeds whose `feed_last_values` row moved forward. */
  moved: number;
}

/** Moves what is pending now (see the module doc). */
export async function moveLastValues(sql: postgres.Sql): Promise<LastValuesMoved> {
  const [row] = await sql<{ ours: boolean; taken: number; moved: number }[]>`
    with mover as (select pg_try_advisory_xact_lock(${MOVE_LOCK_KEY}) as ours),
    taken as (
      delete from feed_last_values_pending where (select ours from mover)
      returning feed_id, value, at
    ),
    newest as (
      select distinct on (feed_id) feed_id, value, at from taken order by feed_id, at desc
    ),
    moved as (
      update feed_last_values l set value = n.value, at = n.at
      from newest n
      where l.feed_id = n.feed_id and (l.at is null or l.at < n.at)
      returning 1
    )
    select (select ours from mover) as ours, (select count(*) from taken)::int as taken,
           (select count(*) from moved)::int as moved`;
  return row;
}

/**
 * Moves every `intervalMs` until stopped; the stop waits for a move under way and then
 * moves once more, so a stopped serve leaves `feed_last_values` current.
 */
export function startLastValueMover(
  sql: postgres.Sql,
  log: Pick<Logger, "warn">,
  /** `--last-value-move-ms`: readers of `feed_last_values` alone lag by about this. */
  intervalMs: number,
): () => Promise<void> {
  let running: Promise<void> | null = null;
  let failing = false;
  const move = () =>
    moveLastValues(sql).then(() => {
      failing = false;
    }, (error) => {
      // Nothing is lost: the pending rows stay for the next move. One line per outage.
      if (!failing) {
        log.warn("moving last values failed; pending ones stay and move later", {
          error: (error as Error).message,
        });
      }
      failing = true;
    });
  const tick = () => {
    running ??= move().finally(() => running = null);
  };
  const timer = setInterval(tick, intervalMs);
  return async () => {
    clearInterval(timer);
    await running;
    await move();
  };
}

/**
 * The silence check (docs/operations.md, "Alerts"): one statement, run by serve every
 * `--alert-check-interval-ms`, that opens a `stale` alert for each active feed with a
 * `max_silence` whose last reading is older than that, and closes the alerts whose rule
 * was turned off since (threshold mode back to `reject`, `max_silence` null, the feed
 * inactive), which no reading would close any more. A feed's next reading closes its
 * stale alert, in the batch that stores it (src/ingest/write/alert_plan.ts).
 *
 * Safe with several serve instances against one database: at most one alert per feed and
 * kind is open (the unique index `feed_alerts_open`, sql/010), and a check locks the feeds
 * it opens alerts for and their `feed_last_values` rows (sql/014: every feed has one),
 * skipping those a batch holds. A batch that stores a reading of such a feed either held
 * them first (the check skips it, or re-reads its newer last reading from the row the batch
 * updated and finds it not silent) or waits for the check's commit and then closes the new
 * alert. Those batches update a watched feed's `feed_last_values` row in place; the check
 * also reads `feed_last_values_pending` (sql/018), where the readings of a feed that got its
 * `max_silence` after they were written may still wait for the mover.
 */
import type postgres from "postgres";
import type { AlertKind } from "./write/alert_plan.ts";
import type { AlertEvent } from "./write/alerts.ts";

/** Opens and closes what the clock decides; returns the events, opened ones first. */
export async function checkSilence(sql: postgres.Sql): Promise<AlertEvent[]> {
  const rows = await sql<
    {
      event: "opened" | "closed";
      id: number;
      feed_id: number;
      user_id: string;
      key: string;
      kind: AlertKind;
      since_us: number;
      at_us: number;
      threshold: number | null;
      peak: number | null;
      max_silence_s: number | null;
    }[]
  >`
    with ended as (
      update feed_alerts a
      set closed_at = now(), updated_at = now()
      from feeds f
      where a.feed_id = f.id and a.closed_at is null
        and (not f.is_active
             or (a.kind = 'stale' and f.max_silence is null)
             or (a.kind <> 'stale' and f.threshold_mode <> 'alert'))
      returning a.id, a.feed_id, a.kind, a.since, a.closed_at as at, a.threshold,
                a.peak_value, a.max_silence
    ), pending as (
      select p.feed_id, max(p.at) as at
      from feed_last_values_pending p
      where p.feed_id in (select id from feeds where max_silence is not null)
      group by p.feed_id
    ), opened as (
      insert into feed_alerts (feed_id, kind, since, opened_at, max_silence)
      select f.id, 'stale', coalesce(greatest(l.at, p.at), f.created_at), now(), f.max_silence
      from feeds f
      join feed_last_values l on l.feed_id = f.id
      left join pending p on p.feed_id = f.id
      where f.max_silence is not null and f.is_active
        and coalesce(greatest(l.at, p.at), f.created_at) < now() - f.max_silence
        and not exists (select 1 from feed_alerts a
                        where a.feed_id = f.id and a.kind = 'stale' and a.closed_at is null)
      for update of f, l skip locked
      on conflict do nothing
      returning id, feed_id, kind, since, opened_at as at, threshold, peak_value, max_silence
    )
    select x.event, x.id::float8 as id, x.feed_id::float8 as feed_id, f.user_id::text as user_id,
           f.key, x.kind, (extract(epoch from x.since) * 1000000)::float8 as since_us,
           (extract(epoch from x.at) * 1000000)::float8 as at_us, x.threshold,
           x.peak_value as peak, extract(epoch from x.max_silence)::float8 as max_silence_s
    from (select 'opened' as event, * from opened
          union all select 'closed' as event, * from ended) x
    join feeds f on f.id = x.feed_id
    order by x.event desc, x.id`;
  return rows.map((r) => ({
    event: r.event,
    id: r.id,
    userId: r.user_id,
    feedId: r.feed_id,
    feedKey: r.key,
    kind: r.kind,
    sinceUs: r.since_us,
    atUs: r.at_us,
    value: null,
    threshold: r.threshold,
    peak: r.peak,
    ...(r.max_silence_s !== null ? { maxSilenceS: r.max_silence_s } : {}),
  }));
}

/** Open alerts by kind, for `feedline_alerts_open` (the partial index `feed_alerts_open`). */
export async function openAlertsByKind(sql: postgres.Sql): Promise<Map<AlertKind, number>> {
  const rows = await sql<{ kind: AlertKind; n: number }[]>`
    select kind, count(*)::int as n from feed_alerts where closed_at is null group by kind`;
  return new Map(rows.map((r) => [r.kind, r.n]));
}

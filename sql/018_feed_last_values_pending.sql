-- Last values appended, then moved in bulk (docs/performance.md, "Fifth round: last values
-- appended, then moved").
--
-- sql/014 gave each feed's last value a narrow row of its own, updated by every batch that
-- stores a reading of the feed. With a large fleet each of a batch's rows lands on another
-- page of that table, and a random page update costs far more than its ~50 bytes (the
-- page read, its full-page image after a checkpoint, the HOT chain to prune): at a million
-- feeds it was most of PostgreSQL's work per reading (22-31 µs/row against 9-11 at 5,000).
--
-- Now a batch appends each feed's newest reading to `feed_last_values_pending`: an insert
-- at the end of a heap with no index, the cheapest write PostgreSQL has. Every
-- `--last-value-move-ms` (30 s) serve moves what is pending into `feed_last_values` in one
-- statement (src/db/last_values.ts): each feed's row is updated once per move, not once per
-- batch, and forward only, as before. Feeds with a `max_silence` are still updated in place: the
-- silence check locks their row (src/ingest/silence_check.ts).
--
-- No foreign key and no index, on purpose: the move reads the whole table anyway, and a
-- feed deleted meanwhile has no `feed_last_values` row for its pending rows to update.
-- Readers that want a feed's newest value read the view below, which takes the newer of
-- the two tables.
create table feed_last_values_pending (
  feed_id bigint not null,
  value text,
  at timestamptz not null
) with (
  -- Each move deletes what it took; vacuum often so the heap stays a few moves long.
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 10000,
  autovacuum_vacuum_insert_scale_factor = 0,
  autovacuum_vacuum_insert_threshold = 100000
);

-- Each feed's newest value, moved or pending. A query for a few feeds is pushed into the
-- pending side's `distinct on` (a scan of the pending rows: one per feed per batch since the
-- last move).
create view feed_latest_values as
select l.feed_id,
       case when p.at > l.at or (l.at is null and p.at is not null) then p.value
            else l.value end as value,
       case when p.at > l.at or (l.at is null and p.at is not null) then p.at
            else l.at end as at
from feed_last_values l
left join (select distinct on (feed_id) feed_id, value, at
           from feed_last_values_pending
           order by feed_id, at desc) p on p.feed_id = l.feed_id;

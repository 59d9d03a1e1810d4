-- Rollups of readings per feed and bucket (docs/operations.md, "Rollups").
--
-- serve --rollups 1m,1h,1d (and replay --rollups) keeps one row per feed, bucket width and
-- bucket, in the same transaction as the readings, from the rows the insert actually
-- stored (RETURNING): a reading absorbed by the key of feed_values (a redelivery, a
-- replay) adds nothing, so the rows here always equal an aggregate of the raw table over
-- the same readings. Only numeric readings are rolled up (value is not null): text
-- readings (ON, open) have no min, max or sum.
--
-- width:  the bucket's length (interval '1 minute', '1 hour', '1 day'); buckets start at
--         date_bin(width, created_at, '2000-01-01 00:00:00+00'), so whole days are UTC
--         days.
-- count, min, max, sum: of the bucket's readings (avg = sum / count).
-- first_at, last_at: device time (created_at) of its earliest and latest reading; last:
--         the value of the latest one. A late reading merges into its own bucket: count
--         and sum add, min and max widen, last moves only if the reading is newer.
--
-- `feedline rollups --rebuild --since <time>` recomputes them from feed_values; serve
-- --retention 1h=2y,... deletes buckets older than their tier.
-- The table is built for the batches' upsert (docs/performance.md, "Rollups"): no foreign
-- key (its check costs a lookup and a row lock per new bucket, as it did for feed_values,
-- sql/007; the trigger below deletes a deleted feed's rollups instead), a fillfactor of 50
-- so that merging a reading into a bucket is a HOT update (no new index entries, no
-- bloat), and no b-tree beside the key: retention finds old buckets with a BRIN index,
-- which new buckets barely touch.
create table feed_rollups (
  feed_id bigint not null,
  width interval not null check (width > interval '0'),
  bucket timestamptz not null,
  count bigint not null,
  min float8 not null,
  max float8 not null,
  sum float8 not null,
  first_at timestamptz not null,
  last_at timestamptz not null,
  last float8 not null,
  primary key (feed_id, width, bucket)
) with (fillfactor = 50);

create index feed_rollups_bucket on feed_rollups using brin (bucket);

-- Deleting feeds (or their users) deletes their rollups, as their readings (sql/007). The
-- lock on feed_values is the one that trigger takes: it waits for the batches in flight
-- (they write feed_values and feed_rollups in one statement) and holds new ones back.
create function feedline_delete_feed_rollups() returns trigger
language plpgsql as $$
begin
  lock table feed_values in share row exclusive mode;
  delete from feed_rollups r using deleted_feeds d where r.feed_id = d.id;
  return null;
end;
$$;

create trigger feeds_delete_rollups
  after delete on feeds
  referencing old table as deleted_feeds
  for each statement execute function feedline_delete_feed_rollups();

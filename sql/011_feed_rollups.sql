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
create table feed_rollups (
  feed_id bigint not null references feeds(id) on delete cascade,
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
);

-- Retention deletes by width and age.
create index feed_rollups_width_bucket on feed_rollups (width, bucket);

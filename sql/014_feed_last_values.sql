-- Each feed's last value in a narrow table of its own (docs/performance.md, "Fleet scale").
--
-- Every batch moved the last value of each feed it stored forward by updating the feed's
-- `feeds` row: a wide row (key, user, thresholds, alert state), so with a million feeds the
-- table is far larger than shared_buffers, and each batch dirtied about one `feeds` page
-- per row (31 µs/row of PostgreSQL work at 1M feeds against about 9 at 5k). The last value
-- now lives in `feed_last_values`: about 50 bytes a row, so a million feeds take ~70 MB
-- with their index, and with a fillfactor of 80 the update is a HOT update (the primary key
-- is never changed, so no index entry is written).
--
-- Every feed has its row from its creation (the trigger below), with null value and at until
-- its first reading, so ingest only ever updates (no insert, no orphan rows for a feed
-- deleted meanwhile: the update finds nothing), and the silence check can lock the row a
-- batch writes (src/ingest/silence_check.ts). The foreign key costs nothing on the write
-- path: PostgreSQL checks it on insert and on a change of feed_id only, and it deletes a
-- feed's row with the feed.
create table feed_last_values (
  feed_id bigint primary key references feeds(id) on delete cascade,
  value text,
  at timestamptz
) with (fillfactor = 80);

insert into feed_last_values (feed_id, value, at)
select id, last_value, last_value_at from feeds;

create function feedline_add_feed_last_values() returns trigger
language plpgsql as $$
begin
  insert into feed_last_values (feed_id) select id from new_feeds;
  return null;
end;
$$;

create trigger feeds_last_value_row
  after insert on feeds
  referencing new table as new_feeds
  for each statement execute function feedline_add_feed_last_values();

-- No reader is left for these; dropping them (catalog only) makes a stale read fail loudly.
alter table feeds drop column last_value, drop column last_value_at;

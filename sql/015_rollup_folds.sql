-- How far each rollup width has been folded (docs/operations.md, "Rollups";
-- src/db/rollup_folds.ts).
--
-- serve --rollups 1m,1h,1d writes only the finest width (1m) in the batches' transaction
-- for live data; the coarser widths are folded from the next finer one (1h from 1m, 1d
-- from 1h) by a timer, one closed bucket at a time. One row per configured width:
--
-- folded_before: for a coarse width, every bucket of that width that starts before it is
--         complete and exact in feed_rollups (it holds every stored numeric reading), and
--         no bucket at or after it is there yet (its readings are only in the finer
--         widths). A batch writes a reading into a coarse width only when the reading's
--         bucket is before it (late data, rare); the fold materialises the buckets from
--         here up to the last closed one and moves it forward. 'infinity' for the finest
--         width: every bucket written directly.
--
-- The rows are the configuration the table was written with (the set of widths, hence
-- which width folds from which): serve and replay compare them with --rollups at start and
-- realign them when they differ (src/db/rollup_folds.ts). A batch reads them FOR SHARE
-- (ROW SHARE on this table), a fold locks the table EXCLUSIVE: the fold waits for the
-- batches that read the old watermark and holds new ones back until it commits, so a
-- reading is either folded or written directly, never both, never neither.
create table rollup_folds (
  width interval primary key check (width > interval '0'),
  folded_before timestamptz not null
);

-- Deleting feeds also waits for a fold in progress (it holds this table EXCLUSIVE), so a
-- fold never materialises the rollups of a feed being deleted from a snapshot before the
-- delete: SHARE waits for EXCLUSIVE and lets the batches' ROW SHARE through.
create or replace function feedline_delete_feed_rollups() returns trigger
language plpgsql as $$
begin
  lock table feed_values in share row exclusive mode;
  lock table rollup_folds in share mode;
  delete from feed_rollups r using deleted_feeds d where r.feed_id = d.id;
  return null;
end;
$$;

-- feed_rollups with the coarse buckets not folded yet, aggregated on the fly from the
-- finest width (every bucket at or after a width's folded_before): for dashboards that
-- show the current hour or day. Same columns; a query by feed and width reads the
-- finest width's rows of the open buckets only (the key's range from folded_before).
create view feed_rollups_live as
select feed_id, width, bucket, count, min, max, sum, first_at, last_at, last
from feed_rollups
union all
select r.feed_id, f.width, date_bin(f.width, r.bucket, '2000-01-01 00:00:00+00') as bucket,
       sum(r.count)::int8 as count, min(r.min) as min, max(r.max) as max, sum(r.sum) as sum,
       min(r.first_at) as first_at, max(r.last_at) as last_at,
       (array_agg(r.last order by r.last_at desc))[1] as last
from rollup_folds f
join rollup_folds finest on finest.folded_before = 'infinity'
join feed_rollups r on r.width = finest.width and r.bucket >= f.folded_before
where f.folded_before <> 'infinity'
group by r.feed_id, f.width, 3;

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

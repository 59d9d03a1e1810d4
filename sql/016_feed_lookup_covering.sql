-- The feed lookup of a cold batch reads only the unique key (docs/performance.md, "Fleet
-- scale (issue 26)").
--
-- serve looks up the feeds its feed cache does not hold by (user_id, key)
-- (src/ingest/write/lookups.ts): with a million feeds and the default cache, nearly every
-- reading. That was a probe of the unique index plus a random page of `feeds` for the
-- columns it reads, and the table (150 MB at 1M feeds) does not fit in the default 128 MB
-- shared_buffers. The unique key now carries those columns (INCLUDE: not part of the key,
-- so uniqueness and `on conflict (user_id, key)` are as before), so the lookup is an
-- index-only scan of pages that autovacuum has marked all-visible: since sql/014, ingest no
-- longer updates `feeds` (only the alert rules do, for the feeds that have them). At 1M
-- feeds, 4,000 random feeds per statement: 14.7 → 9.0 µs/row of backend CPU, 1.37 → 0.79
-- pages read per row.
--
-- Building the index reads the whole table under a lock that blocks writes to `feeds` (not
-- reads); with a million feeds, about ten seconds.
alter table feeds
  add constraint feeds_user_key unique (user_id, key)
    include (id, is_active, threshold_min, threshold_max, threshold_mode,
             threshold_hysteresis, threshold_min_duration, max_silence),
  drop constraint feeds_user_id_key_key;

-- sql/007 left room in each page for the last-value update; that update has moved to
-- feed_last_values (sql/014), so new pages are filled (existing ones stay as they are
-- until a rewrite such as VACUUM FULL).
alter table feeds set (fillfactor = 100);

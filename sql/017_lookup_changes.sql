-- A change counter for serve's lookup caches (docs/performance.md, "Feed cache").
--
-- serve caches each feed it found (id, state, thresholds, alert settings) and each
-- registered device, and trusted an entry for --feed-cache-ttl-ms (30 s) only: LISTEN
-- (sql/002) tells a listening instance of a change at once, but where it cannot listen
-- (a transaction pooler, the embedded PGlite) or its listening connection is lost, the TTL
-- was the only bound. So every entry was looked up again every 15 to 30 s, which is most of
-- a batch's work when a large fleet publishes less often than that.
--
-- Now every statement that changes what the caches hold adds one to
-- `lookup_changes.changes`, in its own transaction (so the count moves at its commit, and
-- only if it commits). serve reads the counter every third of the TTL
-- (src/ingest/cache_confirm.ts): the same number as before means nothing cached changed,
-- and the caches keep their entries; another number drops them. The triggers are
-- statement-level (one update of the counter whatever the rows) and fire on the same
-- columns as the notification: the updates ingest makes itself (alert state, a device's
-- status and last seen) are not in the lists, so they never count. A feed or device
-- created is not a change: the caches hold only what was found.
create table lookup_changes (
  one boolean primary key default true check (one),
  changes bigint not null default 0
);

insert into lookup_changes default values;

create function feedline_count_lookup_change() returns trigger
language plpgsql as $$
begin
  update lookup_changes set changes = changes + 1;
  return null;
end;
$$;

create trigger feeds_count_change
  after update of user_id, key, is_active, threshold_min, threshold_max, threshold_mode,
    threshold_hysteresis, threshold_min_duration, max_silence or delete on feeds
  for each statement execute function feedline_count_lookup_change();

create trigger devices_count_change
  after update of user_id, code or delete on devices
  for each statement execute function feedline_count_lookup_change();

-- TRUNCATE fires no delete trigger.
create trigger feeds_count_truncate
  after truncate on feeds
  for each statement execute function feedline_count_lookup_change();

create trigger devices_count_truncate
  after truncate on devices
  for each statement execute function feedline_count_lookup_change();

-- Feed lookup cache invalidation (docs/performance.md). feedline caches each feed's id,
-- is_active and thresholds; when an operator changes one of those, or deletes or renames
-- a feed, this trigger tells every listening instance, which drops that entry at once
-- instead of waiting for the cache TTL. The update feedline itself makes every batch
-- (last_value, last_value_at, updated_at) is not in the column list, so it never fires.
-- Payload: the feed's old user_id (36 characters), '/', its old key. NOTIFY is delivered
-- at commit, and only if the transaction commits (PostgreSQL docs, NOTIFY).
create function feedline_notify_feed_change() returns trigger
language plpgsql as $$
begin
  perform pg_notify('feedline_feed_changed', old.user_id::text || '/' || old.key);
  return null;
end;
$$;

create trigger feeds_notify_change
  after update of user_id, key, is_active, threshold_min, threshold_max or delete on feeds
  for each row execute function feedline_notify_feed_change();

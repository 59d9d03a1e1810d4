-- Tenant aliases (docs/topics-and-payloads.md, "Mappings"): a rule of a mappings file
-- may name whose a message is by a word (`zigbee2mqtt`, a site name) instead of a user id
-- in the topic; the user fills this table once:
--   insert into tenant_aliases (alias, user_id) values ('zigbee2mqtt', '<user uuid>');
-- A message whose alias is not here is rejected as `unknown_tenant` (dead-lettered, and
-- stored by `replay --rejects` once the alias is registered).
create table tenant_aliases (
  alias text primary key,
  user_id uuid not null references users(id) on delete cascade,
  created_at timestamptz not null default now()
);

-- The processor caches each alias's user (src/ingest/tenant_cache.ts) as it caches feeds;
-- as for feeds (sql/002), a change or a removal tells every listening instance, which
-- drops that alias at once instead of waiting for the cache TTL. A new alias needs no
-- notice: only aliases that were found are cached. Payload: the old alias.
create function feedline_notify_tenant_alias_change() returns trigger
language plpgsql as $$
begin
  perform pg_notify('feedline_tenant_alias_changed', old.alias);
  return null;
end;
$$;

create trigger tenant_aliases_notify_change
  after update or delete on tenant_aliases
  for each row execute function feedline_notify_tenant_alias_change();

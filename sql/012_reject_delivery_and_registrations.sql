-- Rejects that a registration fixes (docs/replay.md, "Rejects that fix themselves"):
-- the dead letter keeps how a message came (its QoS and retain flag), so re-processing
-- it is faithful; and serve learns of a registration at once to re-process them
-- (src/ingest/reprocess.ts). Rows written before this migration have neither: NULL, read
-- as QoS 0, not retained (what `replay --rejects` always assumed).
alter table ingest_rejects add column qos smallint, add column retain boolean;

-- Messages serve re-processed from the dead letter and then stored: `feedline trace`
-- shows them as "stored (reprocessed)". One row per message; kept as long as the
-- rejects (reject retention deletes them with the same age).
create table ingest_reprocessed (
  received_at timestamptz not null,
  topic text not null,
  reason text not null,
  reprocessed_at timestamptz not null default now()
);
create unique index ingest_reprocessed_message on ingest_reprocessed (received_at, md5(topic));

-- A new feed, device or tenant alias may fix rejects: tell every listening serve, once per
-- statement (a bulk registration is one notice). Payload: the table's name.
create function feedline_notify_registered() returns trigger
language plpgsql as $$
begin
  perform pg_notify('feedline_registered', tg_table_name);
  return null;
end;
$$;

create trigger feeds_notify_registered after insert on feeds
  for each statement execute function feedline_notify_registered();
create trigger devices_notify_registered after insert on devices
  for each statement execute function feedline_notify_registered();
create trigger tenant_aliases_notify_registered after insert on tenant_aliases
  for each statement execute function feedline_notify_registered();

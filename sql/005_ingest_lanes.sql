-- Clock lanes (docs/delivery.md, "Duplicates and idempotence"). A reading without a
-- device timestamp is keyed by (feed_id, receive time in µs). With several instances in
-- one shared-subscription group, each leases a lane L here and stamps only microseconds
-- ≡ L (mod 16), so two instances can never stamp two readings of one feed alike. A lease
-- is a row, renewed by plain UPDATEs (no session state: works through a transaction-mode
-- pooler); one not renewed by its expiry may be taken by another instance.
create table if not exists ingest_lanes (
  lane int primary key check (lane >= 0),
  -- The holder's MQTT client id, for people; `token` identifies the holding process.
  holder text,
  token uuid,
  expires_at timestamptz not null default '-infinity',
  renewed_at timestamptz,
  -- The highest stamp the holder had given at its last renewal or release: the next
  -- holder starts above it.
  stamped_until_us bigint not null default 0
);
insert into ingest_lanes (lane) select generate_series(0, 15) on conflict do nothing;

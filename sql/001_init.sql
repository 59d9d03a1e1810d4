-- feedline schema, version 1. See docs/ and DESIGN §4.
-- Every column but the identifying ones has a default, so operators can register
-- things with plain SQL: insert into users(id) / devices(user_id, code) / feeds(user_id, key).

create table users (
  id uuid primary key,
  created_at timestamptz not null default now()
);

create table devices (
  id bigint generated always as identity primary key,
  user_id uuid not null references users(id) on delete cascade,
  code text not null,
  status text not null default 'unknown',
  last_seen_at timestamptz,
  status_changed_at timestamptz,
  created_at timestamptz not null default now(),
  unique (user_id, code)
);

create table device_status_events (
  id bigint generated always as identity primary key,
  device_id bigint not null references devices(id) on delete cascade,
  status text not null,
  payload jsonb,
  at timestamptz not null
);
create index device_status_events_device_at on device_status_events (device_id, at);

create table feeds (
  id bigint generated always as identity primary key,
  user_id uuid not null references users(id) on delete cascade,
  device_id bigint references devices(id) on delete set null,
  key text not null,
  is_active boolean not null default true,
  threshold_min float8,
  threshold_max float8,
  last_value text,
  last_value_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (user_id, key),
  check (threshold_min is null or threshold_max is null or threshold_min <= threshold_max)
);

-- One row per reading. (feed_id, created_at) is the identity of a reading: replays and
-- redeliveries of timestamped data hit the key and are absorbed by `on conflict do nothing`.
-- The column layout keeps range partitioning by created_at possible later.
create table feed_values (
  feed_id bigint not null references feeds(id) on delete cascade,
  value float8,
  value_text text,
  created_at timestamptz not null,
  received_at timestamptz not null default now(),
  primary key (feed_id, created_at)
);

-- The dead letter: every message feedline did not store, with a reason code from the
-- closed set documented in docs/topics-and-payloads.md. payload is capped; payload_size
-- keeps the original length.
create table ingest_rejects (
  id bigint generated always as identity primary key,
  topic text not null,
  payload bytea not null default ''::bytea,
  payload_size integer not null default 0,
  reason text not null,
  detail text,
  received_at timestamptz not null default now()
);
-- A message's receive time is unique per process, so this key makes re-processing a
-- batch (after a crash, a retry) leave one row per message and reason.
create unique index ingest_rejects_message on ingest_rejects (received_at, reason, topic);
create index ingest_rejects_reason on ingest_rejects (reason, received_at);

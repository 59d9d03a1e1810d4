-- Sparkplug B state (docs/topics-and-payloads.md, "Sparkplug B"). An edge node's NBIRTH
-- and a device's DBIRTH declare each metric's name, alias and datatype; the DATA messages
-- that follow name most metrics by alias alone. The last BIRTH of each edge node and
-- device is kept here, written in the transaction that stores the BIRTH, so a restarted
-- serve (or another instance of a shared group) decodes DATA by alias at once.
--
-- A BIRTH replaces the row of its edge node or device (and with it, by cascade, its
-- metrics) only when it was received later than the one recorded: a replayed old BIRTH
-- stores its readings but leaves newer state alone. Each BIRTH gets a new id, so what is
-- cached by id never changes (src/ingest/write/sparkplug_state.ts).
create table sparkplug_births (
  id bigint generated always as identity primary key,
  user_id uuid not null references users(id) on delete cascade,
  group_id text not null,
  edge_node text not null,
  -- '' for the edge node itself (NBIRTH); the device id for a DBIRTH.
  device text not null default '',
  -- The NBIRTH's bdSeq: an NDEATH with another one is the will of an older session.
  bd_seq bigint,
  -- The BIRTH payload's time (else its receive time), and its receive time.
  born_at timestamptz not null,
  received_at timestamptz not null,
  unique (user_id, group_id, edge_node, device)
);

create table sparkplug_metrics (
  birth_id bigint not null references sparkplug_births(id) on delete cascade,
  name text not null,
  -- Null: the metric has no alias (DATA names it in full).
  alias bigint,
  -- Sparkplug B datatype number; null when the BIRTH left it out.
  datatype int,
  primary key (birth_id, name)
);
create unique index sparkplug_metrics_alias on sparkplug_metrics (birth_id, alias)
  where alias is not null;

-- feed_values becomes range-partitioned on created_at (docs/scaling.md, "Partitions").
-- Old data goes into one partition per calendar month (UTC) that holds rows, plus the
-- current and the next month; after this, `migrate` and `serve` keep partitions ahead
-- of time with --partition-interval (src/db/partitions.ts), continuing from the end of
-- the last one. A default partition catches readings no range partition takes (a
-- device clock in 2001); serve reports what lands there.
--
-- The primary key (feed_id, created_at) holds the partition key, so it stays unique
-- across partitions and `insert ... on conflict do nothing` works unchanged.
--
-- This rewrites the table inside the migration's transaction: every row is copied once,
-- with the old table locked. On a large table, plan for the time and twice the space.
alter table feed_values rename to feed_values_unpartitioned;
alter index feed_values_pkey rename to feed_values_unpartitioned_pkey;

create table feed_values (
  feed_id bigint not null references feeds(id) on delete cascade,
  value float8,
  value_text text,
  created_at timestamptz not null,
  received_at timestamptz not null default now(),
  primary key (feed_id, created_at)
) partition by range (created_at);

create table feed_values_default partition of feed_values default;
-- Stragglers are found by when they arrived.
create index feed_values_default_received on feed_values_default (received_at);

do $$
declare
  m timestamp; -- a month's first instant, UTC wall clock
begin
  for m in
    select distinct date_trunc('month', created_at at time zone 'UTC')
      from feed_values_unpartitioned
    union
    select date_trunc('month', now() at time zone 'UTC') + k * interval '1 month'
      from generate_series(0, 1) k
    order by 1
  loop
    execute format(
      'create table %I partition of feed_values for values from (%L) to (%L)',
      'feed_values_p' || to_char(m, 'YYYYMMDD'),
      m at time zone 'UTC',
      (m + interval '1 month') at time zone 'UTC');
  end loop;
end;
$$;

insert into feed_values (feed_id, value, value_text, created_at, received_at)
  select feed_id, value, value_text, created_at, received_at from feed_values_unpartitioned;
drop table feed_values_unpartitioned;

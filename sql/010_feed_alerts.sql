-- Threshold and silence alerts (docs/operations.md, "Alerts").
--
-- 1. Per feed, how a reading outside [threshold_min, threshold_max] is handled:
--    threshold_mode 'reject' (the default, as before: dead-lettered as out_of_range) or
--    'alert' (stored, and an alert of kind 'above' or 'below' opened). In alert mode,
--    threshold_hysteresis is the band the value must re-enter before the alert closes (an
--    'above' alert closes at a value <= threshold_max - hysteresis), and
--    threshold_min_duration how long, in device time, the value must stay out before the
--    alert opens. max_silence (any mode): a feed with no reading for longer than that gets
--    a 'stale' alert, which its next reading closes. Plain SQL sets them:
--      update feeds set threshold_mode = 'alert', threshold_hysteresis = 2,
--                       threshold_min_duration = '30 seconds' where ...;
--    Adding columns with constant defaults rewrites nothing.
-- 2. The alert rules' own state per feed, written by feedline only: the newest reading they
--    have seen (device time: an older reading, late or replayed, changes no alert), and an
--    excursion still shorter than threshold_min_duration (its kind, start and peak).
alter table feeds
  add column threshold_mode text not null default 'reject',
  add column threshold_hysteresis float8,
  add column threshold_min_duration interval,
  add column max_silence interval,
  add column alert_seen_at timestamptz,
  add column alert_pending_kind text,
  add column alert_pending_since timestamptz,
  add column alert_pending_peak float8,
  add constraint feeds_threshold_mode check (threshold_mode in ('reject', 'alert')),
  add constraint feeds_threshold_hysteresis check (threshold_hysteresis >= 0),
  add constraint feeds_threshold_min_duration
    check (threshold_min_duration >= interval '0'),
  add constraint feeds_max_silence check (max_silence > interval '0'),
  add constraint feeds_alert_pending_kind check (alert_pending_kind in ('above', 'below'));

-- The feed cache holds the alert settings too: a change of them must reach it at once
-- (sql/002). The alert state columns are not in the list, so the rules' own updates never
-- fire it.
drop trigger feeds_notify_change on feeds;
create trigger feeds_notify_change
  after update of user_id, key, is_active, threshold_min, threshold_max, threshold_mode,
    threshold_hysteresis, threshold_min_duration, max_silence or delete on feeds
  for each row execute function feedline_notify_feed_change();

-- The silence check (serve, every --alert-check-interval-ms) reads only the feeds that
-- have a max_silence. Neither column changes with a reading, so the last-value update of
-- every batch stays a HOT update.
create index feeds_max_silence on feeds (id) where max_silence is not null;

-- One row per alert. Times are device time (the readings' created_at) except where said.
create table feed_alerts (
  id bigint generated always as identity primary key,
  feed_id bigint not null references feeds(id) on delete cascade,
  kind text not null check (kind in ('above', 'below', 'stale')),
  -- When the condition began: the first reading of the excursion out of range (earlier
  -- than opened_at with threshold_min_duration); for 'stale', the feed's last reading
  -- before the silence (its creation if it never had one).
  since timestamptz not null,
  -- When it opened: the created_at of the reading that opened it, so (feed_id, opened_at)
  -- is that reading's key in feed_values; for 'stale', the database's clock at the check.
  opened_at timestamptz not null,
  -- The reading that closed it (its created_at); null while open. An alert whose rule was
  -- turned off (mode back to 'reject', max_silence null, feed inactive) is closed by the
  -- next silence check, at the database's clock.
  closed_at timestamptz,
  -- The threshold crossed ('above': threshold_max, 'below': threshold_min) and the value of
  -- the reading that opened it; for 'stale', max_silence.
  threshold float8,
  opened_value float8,
  max_silence interval,
  -- The farthest value of the excursion: the highest of an 'above', the lowest of a 'below'.
  peak_value float8,
  closed_value float8,
  -- Wall clock: when feedline wrote the row, and last changed it.
  detected_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- One excursion is one alert: replaying its readings cannot add a second row.
  unique (feed_id, kind, since)
);
-- At most one open alert per feed and kind, also with several serve instances.
create unique index feed_alerts_open on feed_alerts (feed_id, kind) where closed_at is null;

-- Every alert opened or closed is announced on the channel feedline_alerts, at commit
-- (and only if the transaction commits). Payload: JSON with id, feed_id, user_id, key,
-- kind, event ('opened' or 'closed') and the alert's times.
create function feedline_notify_alert() returns trigger
language plpgsql as $$
declare
  f record;
  body jsonb;
begin
  select user_id, key into f from feeds where id = new.feed_id;
  body := jsonb_build_object('id', new.id, 'feed_id', new.feed_id, 'user_id', f.user_id,
    'key', f.key, 'kind', new.kind, 'since', new.since, 'opened_at', new.opened_at,
    'closed_at', new.closed_at, 'peak_value', new.peak_value);
  if tg_op = 'INSERT' then
    perform pg_notify('feedline_alerts', (body || '{"event": "opened"}')::text);
  end if;
  if new.closed_at is not null and (tg_op = 'INSERT' or old.closed_at is null) then
    perform pg_notify('feedline_alerts', (body || '{"event": "closed"}')::text);
  end if;
  return null;
end;
$$;

create trigger feed_alerts_notify
  after insert or update of closed_at on feed_alerts
  for each row execute function feedline_notify_alert();

-- A status event is identified by (device, time, status), like a reading by
-- (feed, created_at): replaying a capture, or re-processing a batch, must not record the
-- same event twice. Receive times are unique per process (src/clock.ts), so live events
-- never collide; the processor inserts with `on conflict do nothing`.
delete from device_status_events a
  using device_status_events b
  where a.device_id = b.device_id and a.at = b.at and a.status = b.status and a.id > b.id;
create unique index device_status_events_identity
  on device_status_events (device_id, at, status);

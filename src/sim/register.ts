/**
 * `simulate --register`: writes a fleet's users, devices and feeds (with thresholds)
 * into the database, so that serve accepts its traffic without auto-register. One
 * transaction; running it again changes nothing but thresholds that differ.
 */
import type postgres from "postgres";
import type { Fleet } from "./fleet.ts";

/** Rows written (new ones; an existing row is left alone or only its thresholds updated). */
export interface RegisterResult {
  users: number;
  devices: number;
  feeds: number;
}

/**
 * Registers `fleet` in one transaction and returns how many rows were new or changed.
 *
 * @example
 * ```ts
 * await registerFleet(sql, buildFleet({ seed: 1, users: 1, devicesPerUser: 2, feedsPerDevice: 3 }));
 * ```
 */
export function registerFleet(sql: postgres.Sql, fleet: Fleet): Promise<RegisterResult> {
  const userIds = fleet.users.map((u) => u.id);
  const devUsers = fleet.devices.map((d) => d.userId);
  const devCodes = fleet.devices.map((d) => d.code);
  const feeds = fleet.devices.flatMap((d) => d.feeds.map((f) => ({ d, f })));
  return sql.begin(async (tx) => {
    const users = await tx`
      insert into users (id) select * from unnest(${userIds}::uuid[])
      on conflict do nothing`;
    const devices = await tx`
      insert into devices (user_id, code)
      select * from unnest(${devUsers}::uuid[], ${devCodes}::text[])
      on conflict do nothing`;
    // `on conflict ... do update ... where` (PostgreSQL 9.5+) touches only rows whose
    // device or thresholds differ, so a second run leaves updated_at alone.
    const feedRows = await tx`
      insert into feeds (user_id, key, device_id, threshold_min, threshold_max)
      select x.u, x.k, d.id, x.lo, x.hi
      from unnest(${feeds.map((x) => x.d.userId)}::uuid[], ${feeds.map((x) => x.f.key)}::text[],
                  ${feeds.map((x) => x.d.code)}::text[],
                  ${feeds.map((x) => x.f.thresholdMin)}::float8[],
                  ${feeds.map((x) => x.f.thresholdMax)}::float8[]) as x(u, k, c, lo, hi)
      join devices d on d.user_id = x.u and d.code = x.c
      on conflict (user_id, key) do update
        set device_id = excluded.device_id,
            threshold_min = excluded.threshold_min,
            threshold_max = excluded.threshold_max,
            updated_at = now()
        where feeds.device_id is distinct from excluded.device_id
           or feeds.threshold_min is distinct from excluded.threshold_min
           or feeds.threshold_max is distinct from excluded.threshold_max`;
    return { users: users.count, devices: devices.count, feeds: feedRows.count };
  });
}

/**
 * The benchmark's fleet: users × devices × feeds, registered in a fresh database, and
 * the topic each feed is published on. The publisher reads the same list from a file,
 * so it and the database agree on every (user, device, feed).
 */
import type postgres from "postgres";

/** Shape of the fleet. */
export interface FleetSize {
  users: number;
  devices: number;
  feeds: number;
}

/** One feed of the fleet and the topic it is published on. */
export interface FleetFeed {
  userId: string;
  device: string;
  feed: string;
  topic: string;
}

/** Builds the fleet with random user ids; topics follow the default feed template. */
export function buildFleet(size: FleetSize): FleetFeed[] {
  const out: FleetFeed[] = [];
  for (let u = 0; u < size.users; u++) {
    const userId = crypto.randomUUID();
    for (let d = 0; d < size.devices; d++) {
      const device = `dev${String(d).padStart(3, "0")}`;
      for (let f = 0; f < size.feeds; f++) {
        // feeds are unique per user (unique (user_id, key)), so the key names the device.
        const feed = `${device}-f${f}`;
        out.push({ userId, device, feed, topic: `${userId}/${device}/feeds/${feed}` });
      }
    }
  }
  return out;
}

/** Inserts the fleet's users, devices and feeds; returns each feed's id, in fleet order. */
export async function registerFleet(sql: postgres.Sql, fleet: FleetFeed[]): Promise<number[]> {
  const users = [...new Set(fleet.map((f) => f.userId))];
  await sql`insert into users (id) select * from unnest(${users}::uuid[])`;
  const devices = [...new Map(fleet.map((f) => [`${f.userId}/${f.device}`, f])).values()];
  await sql`
    insert into devices (user_id, code)
    select * from unnest(${devices.map((d) => d.userId)}::uuid[],
                         ${devices.map((d) => d.device)}::text[])`;
  const rows = await sql<{ id: string; user_id: string; key: string }[]>`
    insert into feeds (user_id, key, device_id)
    select x.u, x.k, d.id
    from unnest(${fleet.map((f) => f.userId)}::uuid[], ${fleet.map((f) => f.feed)}::text[],
                ${fleet.map((f) => f.device)}::text[]) as x(u, k, c)
    join devices d on d.user_id = x.u and d.code = x.c
    returning id, user_id, key`;
  const ids = new Map(rows.map((r) => [`${r.user_id}/${r.key}`, Number(r.id)]));
  return fleet.map((f) => ids.get(`${f.userId}/${f.feed}`)!);
}

/**
 * The benchmark's fleet: users × devices × feeds, registered in a fresh database, and
 * the topic each feed is published on. The publisher reads the same list from a file,
 * so it and the database agree on every (user, device, feed). Also the benchmark's
 * databases themselves: created, migrated and emptied between phases here.
 */
import postgres from "postgres";
import { applyMigrations } from "../src/db/migrate.ts";

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

/** Feeds per registration statement: million-element parameters are slow to build and send. */
const FEEDS_PER_STATEMENT = 50_000;

/**
 * Inserts the fleet's users, devices and feeds, about `feedsPerStatement` feeds per
 * statement; returns each feed's id, in fleet order.
 */
export async function registerFleet(
  sql: postgres.Sql,
  fleet: FleetFeed[],
  feedsPerStatement = FEEDS_PER_STATEMENT,
): Promise<number[]> {
  const ids: number[] = [];
  for (const part of partsByUser(fleet, feedsPerStatement)) {
    for (const id of await registerPart(sql, part)) ids.push(id);
  }
  return ids;
}

/**
 * Splits the fleet (grouped by user, as buildFleet makes it) into parts of about `size`
 * feeds, cut only between users: a user's row goes in with all its devices and feeds.
 */
function* partsByUser(fleet: FleetFeed[], size: number): Generator<FleetFeed[]> {
  let start = 0;
  while (start < fleet.length) {
    let end = Math.min(start + size, fleet.length);
    while (end < fleet.length && fleet[end].userId === fleet[end - 1].userId) end++;
    yield fleet.slice(start, end);
    start = end;
  }
}

async function registerPart(sql: postgres.Sql, fleet: FleetFeed[]): Promise<number[]> {
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

/** A fresh feedline_bench_* database with feedline's schema and a registered fleet. */
export interface BenchDatabase {
  name: string;
  url: string;
  sql: postgres.Sql;
  /** Each feed's topic and id, in fleet order. */
  topics: string[];
  feedIds: number[];
  /** Drops the database (unless kept) and closes its connections. */
  close(): Promise<void>;
}

/**
 * Creates a database on `admin`'s server (`serverUrl`), migrates it and registers a fleet
 * of `size`. `keep` leaves it in place for inspection.
 */
export async function createBenchDatabase(opts: {
  admin: postgres.Sql;
  serverUrl: string;
  size: FleetSize;
  keep: boolean;
  log(msg: string): void;
}): Promise<BenchDatabase> {
  const { admin, log } = opts;
  const name = `feedline_bench_${crypto.randomUUID().replaceAll("-", "").slice(0, 10)}`;
  await admin`create database ${admin(name)}`;
  const url = new URL(opts.serverUrl);
  url.pathname = `/${name}`;
  const sql = postgres(url.href, { max: 2, onnotice: () => {} });
  const close = async () => {
    await sql.end();
    if (!opts.keep) await admin`drop database if exists ${admin(name)} with (force)`;
    else log(`kept database ${url.href}`);
  };
  try {
    await applyMigrations(sql);
    const fleet = buildFleet(opts.size);
    const feedIds = await registerFleet(sql, fleet);
    // Statistics for the planner, as a production database would have them.
    await sql`vacuum analyze`;
    log(`database ${name}: ${fleet.length} feeds registered`);
    return { name, url: url.href, sql, topics: fleet.map((f) => f.topic), feedIds, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/** Empties the tables a phase writes, and analyzes, so the planner sees them empty. */
export async function clearValues(sql: postgres.Sql): Promise<void> {
  await sql`truncate feed_values, feed_rollups, ingest_rejects`;
  await sql`vacuum analyze feed_values`;
}

/** clearValues, and every feed back to no last value: the state before any phase. */
export async function resetData(sql: postgres.Sql): Promise<void> {
  await sql`update feed_last_values set value = null, at = null`;
  // A tree before sql/018 (an A/B against an older main) has no pending table.
  const [{ pending }] = await sql`
    select to_regclass('feed_last_values_pending') is not null as pending`;
  if (pending) await sql`truncate feed_last_values_pending`;
  await clearValues(sql);
}

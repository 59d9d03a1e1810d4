/**
 * Measures the status page's database queries on a database of a given size, so their
 * cost on a production database is known (docs/operations.md quotes the numbers).
 *
 *   deno run -A scripts/bench_status_queries.ts postgres://root@127.0.0.1:5432/postgres
 *
 * Creates a scratch database `feedline_bench_status` on that server (dropped at the end),
 * fills it with FEEDS feeds and devices, VALUES_PER_FEED values each and REJECTS rejects,
 * then times each query (median of RUNS runs) and prints its plan.
 */
import postgres from "postgres";
import { compileTopics, DEFAULT_TEMPLATES } from "../src/core/topics.ts";
import { applyMigrations } from "../src/db/migrate.ts";
import { queryDevices, queryFeeds, queryRejects } from "../src/ops/status_queries.ts";

const FEEDS = Number(Deno.env.get("FEEDS") ?? 100_000);
const VALUES_PER_FEED = Number(Deno.env.get("VALUES_PER_FEED") ?? 50);
const REJECTS = Number(Deno.env.get("REJECTS") ?? 1_000_000);
const RUNS = 20;
const NAME = "feedline_bench_status";

const server = Deno.args[0] ?? "postgres://root@127.0.0.1:5432/postgres";
const admin = postgres(server, { max: 1, onnotice: () => {} });
await admin`drop database if exists ${admin(NAME)} with (force)`;
await admin`create database ${admin(NAME)}`;
const url = new URL(server);
url.pathname = `/${NAME}`;
const sql = postgres(url.href, { max: 2, onnotice: () => {} });
try {
  await applyMigrations(sql);
  console.log(
    `filling: ${FEEDS} feeds and devices, ${FEEDS * VALUES_PER_FEED} values, ` +
      `${REJECTS} rejects`,
  );
  await sql`insert into users (id) select gen_random_uuid() from generate_series(1, 1000)`;
  await sql`
    insert into devices (user_id, code, status, last_seen_at)
    select u.id, 'dev' || g, case when g % 3 = 0 then 'offline' else 'online' end,
           now() - g * interval '1 second'
    from generate_series(1, ${FEEDS}) g
    join (select id, row_number() over () as n from users) u on u.n = 1 + g % 1000`;
  await sql`
    insert into feeds (user_id, device_id, key) select user_id, id, 'temp' || id from devices`;
  await sql`
    update feed_last_values set value = '21.5', at = now() - feed_id * interval '1 second'`;
  await sql`
    insert into feed_values (feed_id, value, created_at)
    select f.id, random() * 40, now() - v * interval '1 minute'
    from feeds f, generate_series(1, ${VALUES_PER_FEED}) v`;
  await sql`
    insert into ingest_rejects (topic, payload, reason, detail, received_at)
    select 'u/d/feeds/x', '\\x7b'::bytea, 'bad_payload', 'invalid JSON',
           now() - g * interval '1 millisecond'
    from generate_series(1, ${REJECTS}) g`;
  await sql`vacuum analyze`;

  for (
    const [name, run] of [
      ["feeds (+ sparklines)", () => queryFeeds(sql)],
      ["rejects", () => queryRejects(sql)],
      ["devices", () => queryDevices(sql)],
      // With each recent device's ingest over the last hour (computed on read).
      ["devices (+ ingest 1 h)", () => queryDevices(sql, compileTopics(DEFAULT_TEMPLATES))],
    ] as const
  ) {
    const times: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const started = performance.now();
      await run();
      times.push(performance.now() - started);
    }
    times.sort((a, b) => a - b);
    console.log(
      `${name}: median ${times[RUNS >> 1].toFixed(1)} ms, max ${times[RUNS - 1].toFixed(1)} ms`,
    );
  }
  const plans = {
    feeds: await sql.unsafe(`explain select f.id, d.code from (select * from feed_last_values
      order by at desc nulls last limit 25) l join feeds f on f.id = l.feed_id
      left join devices d on d.id = f.device_id`),
    sparkline: await sql.unsafe(`explain select created_at, value from feed_values
      where feed_id = 1 and value is not null order by created_at desc limit 40`),
    rejects: await sql.unsafe(`explain select topic from ingest_rejects
      order by received_at desc limit 20`),
  };
  for (const [name, rows] of Object.entries(plans)) {
    console.log(`plan ${name}:\n  ${rows.map((r) => r["QUERY PLAN"]).join("\n  ")}`);
  }
} finally {
  await sql.end();
  await admin`drop database if exists ${admin(NAME)} with (force)`;
  await admin.end();
}

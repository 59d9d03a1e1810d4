/**
 * PostgreSQL's cost of moving last values forward, by fleet size (issue 26; docs/
 * performance.md, "Fleet scale"): the update each batch makes, before sql/014 (the wide
 * `feeds` row, fillfactor 70) and after it (the narrow `feed_last_values`), on the same
 * server in the same database, rounds interleaved (old, new, new, old, ...) so a drift in
 * the machine's load falls on both alike. Each round updates `--batch` random feeds of the
 * fleet, as serve's batch of readings over a fleet much larger than a batch does.
 *
 * Reported per way: the backend's CPU µs per row (/proc of the one connection's backend,
 * as bench/children.ts reads it) and the wall µs per row, and the table's size against
 * shared_buffers. The server's background writes (checkpointer, WAL writer) are not in the
 * backend's CPU; the serve and fleet phases of `deno task bench` count them.
 *
 *   deno task bench:last-values --feeds 1000000 --rounds 100
 */
import postgres from "postgres";
import { cpuSeconds } from "./children.ts";
import {
  EXPLAIN,
  statementBenchArgs,
  withScratchDatabase,
  type Work,
  workOf,
} from "./scratch_database.ts";

const { feeds: FEEDS, rounds: ROUNDS, batch: BATCH, databaseUrl } = statementBenchArgs({
  feeds: 1000000,
  rounds: 100,
  batch: 1000,
});

function log(msg: string): void {
  console.error(`[last-values] ${msg}`);
}

/** The two ways: the statement each batch ran, before and after sql/014. */
const WAYS = {
  "feeds row (before)": (tx: postgres.Sql, ids: string, vals: string, ats: string) =>
    tx.unsafe(`${EXPLAIN}
      update old_feeds f
      set last_value = x.v, last_value_at = x.at, updated_at = now()
      from (select id, v, to_timestamp(c / 1e6) as at
            from unnest('${ids}'::int8[], '${vals}'::text[], '${ats}'::int8[]) as u(id, v, c)) x
      where f.id = x.id and (f.last_value_at is null or f.last_value_at < x.at)`),
  "feed_last_values (after)": (tx: postgres.Sql, ids: string, vals: string, ats: string) =>
    tx.unsafe(`${EXPLAIN}
      update feed_last_values l
      set value = x.v, at = x.at
      from (select id, v, to_timestamp(c / 1e6) as at
            from unnest('${ids}'::int8[], '${vals}'::text[], '${ats}'::int8[]) as u(id, v, c)) x
      where l.feed_id = x.id and (l.at is null or l.at < x.at)`),
};
type Way = keyof typeof WAYS;

async function fill(sql: postgres.Sql): Promise<void> {
  const users = Math.ceil(FEEDS / 500);
  await sql`insert into users (id) select gen_random_uuid() from generate_series(1, ${users})`;
  // 500 feeds per user, keys like the bench fleet's (bench/fleet.ts).
  await sql`
    insert into feeds (user_id, key)
    select u.id, 'dev' || lpad((g % 50)::text, 3, '0') || '-f' || g
    from (select id, row_number() over () as n from users) u
    join generate_series(1, ${FEEDS}) g on u.n = 1 + (g - 1) / 500`;
  // The feeds table as it was before sql/014: its columns, the last value among them, and
  // sql/007's fillfactor.
  await sql`
    create table old_feeds (like feeds including defaults including constraints
                            including indexes including identity)
    with (fillfactor = 70)`;
  await sql`alter table old_feeds add column last_value text, add column last_value_at timestamptz`;
  await sql`insert into old_feeds overriding system value select * from feeds`;
  // Steady state: every feed has had a reading.
  const past = "now() - interval '1 day'";
  await sql.unsafe(`update old_feeds set last_value = '20.5', last_value_at = ${past}`);
  await sql.unsafe(`update feed_last_values set value = '20.5', at = ${past}`);
  // Compacted to their fillfactor, as a table written in place by HOT updates stays; the
  // update of every row above doubled both.
  await sql`vacuum full old_feeds, feed_last_values`;
  await sql`vacuum analyze`;
}

async function main(): Promise<void> {
  await withScratchDatabase(databaseUrl, "feedline_bench_lv", async (sql, name) => {
    log(`${name}: filling ${FEEDS} feeds`);
    await fill(sql);
    const [{ pid }] = await sql<{ pid: number }[]>`select pg_backend_pid() as pid`;
    const sizes = await sql<{ t: string; mb: number }[]>`
      select t, (pg_total_relation_size(t) / 1048576.0)::float8 as mb
      from unnest(array['old_feeds', 'feed_last_values']) t`;
    const [{ setting }] = await sql`select current_setting('shared_buffers') as setting`;
    const cpu: Record<Way, number> = { "feeds row (before)": 0, "feed_last_values (after)": 0 };
    const wall: Record<Way, number> = { "feeds row (before)": 0, "feed_last_values (after)": 0 };
    const zero = (): Work => ({ hit: 0, read: 0, walBytes: 0, walFpi: 0 });
    const work: Record<Way, Work> = {
      "feeds row (before)": zero(),
      "feed_last_values (after)": zero(),
    };
    const order = Object.keys(WAYS) as Way[];
    let at = Date.now() * 1000;
    for (let round = 0; round < ROUNDS; round++) {
      const ways = round % 2 === 0 ? order : [...order].reverse();
      const ids = new Set<number>();
      while (ids.size < Math.min(BATCH, FEEDS)) ids.add(1 + Math.floor(Math.random() * FEEDS));
      const idList = [...ids];
      const idText = `{${idList.join(",")}}`;
      const valText = `{${idList.map((i) => String(i % 997)).join(",")}}`;
      const atText = `{${idList.map(() => String(at++)).join(",")}}`;
      for (const way of ways) {
        const cpu0 = (await cpuSeconds(pid)) ?? 0;
        const t0 = performance.now();
        const w = workOf(await WAYS[way](sql, idText, valText, atText));
        wall[way] += performance.now() - t0;
        for (const k of Object.keys(w) as (keyof Work)[]) work[way][k] += w[k];
        cpu[way] += ((await cpuSeconds(pid)) ?? 0) - cpu0;
      }
    }
    const rows = ROUNDS * Math.min(BATCH, FEEDS);
    const load = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
    console.log(
      `last-value update, ${FEEDS} feeds, ${ROUNDS} rounds of ${BATCH} random feeds, ` +
        `shared_buffers ${setting}, load average ${load}`,
    );
    console.log(
      "| way | table MB | backend CPU µs/row | wall µs/row | pages read/row | " +
        "WAL bytes/row | full-page images/1000 rows |",
    );
    console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (const way of order) {
      const table = way.startsWith("feeds") ? "old_feeds" : "feed_last_values";
      const mb = sizes.find((s) => s.t === table)!.mb;
      console.log(
        `| ${way} | ${mb.toFixed(0)} | ${(cpu[way] * 1e6 / rows).toFixed(1)} | ${
          (wall[way] * 1e3 / rows).toFixed(1)
        } | ${(work[way].read / rows).toFixed(2)} | ${(work[way].walBytes / rows).toFixed(0)} | ${
          (work[way].walFpi * 1000 / rows).toFixed(1)
        } |`,
      );
    }
  });
}

await main();

/**
 * PostgreSQL's cost of a batch's statements over a large fleet (issue 26; docs/
 * performance.md, "Fleet scale"): the feed lookup of a cold batch, the insert of its
 * readings and the last-value update, each in the ways `--ways` names, on the same server
 * in the same scratch database, rounds interleaved (a, b, b, a, ...) so a drift in the
 * machine's load falls on all alike. Each round takes `--batch` random feeds of the fleet,
 * as serve's batch over a fleet much larger than a batch does.
 *
 * Reported per statement and way: the backend's CPU µs per row (/proc of the one
 * connection's backend, as bench/children.ts reads it), wall µs per row, and from
 * `EXPLAIN (ANALYZE, BUFFERS, WAL)` the pages read from outside shared_buffers, pages hit,
 * WAL bytes and full-page images per row. The server's background work (checkpointer, WAL
 * writer) is not in the backend's CPU; the fleet phase of `deno task bench` counts it.
 *
 *   deno run -A bench/fleet_statements.ts --feeds 1000000 --rounds 40
 */
import { parseArgs } from "node:util";
import postgres from "postgres";
import { cpuSeconds } from "./children.ts";
import { EXPLAIN, withScratchDatabase, type Work, workOf } from "./scratch_database.ts";

const { values: args } = parseArgs({
  options: {
    feeds: { type: "string", default: "1000000" },
    rounds: { type: "string", default: "40" },
    batch: { type: "string", default: "4000" },
    only: { type: "string", default: "" },
    keep: { type: "boolean", default: false },
    "database-url": {
      type: "string",
      default: Deno.env.get("DATABASE_URL") ?? "postgres://root@127.0.0.1:5432/postgres",
    },
  },
});
const FEEDS = Number(args.feeds);
const ROUNDS = Number(args.rounds);
const BATCH = Math.min(Number(args.batch), FEEDS);

function log(msg: string): void {
  console.error(`[fleet-statements] ${msg}`);
}

/** One round's batch: random feeds of the fleet, as the lookup and the writes see them. */
interface Batch {
  pairs: { user_id: string; key: string }[];
  ids: number[];
  at: number;
}

const LOOKUP_COLUMNS = `f.id, f.user_id, f.key, f.is_active, f.threshold_min, f.threshold_max,
  f.threshold_mode = 'alert' as alert_mode, f.threshold_hysteresis as hysteresis,
  (extract(epoch from f.threshold_min_duration) * 1e6)::float8 as min_duration_us,
  f.max_silence is not null as watches_silence`;

function lookup(table: string, sorted = false) {
  return (sql: postgres.Sql, b: Batch) => {
    const pairs = b.pairs.map((p, i) => ({ p, i }));
    if (sorted) {
      pairs.sort((x, y) => x.p.user_id < y.p.user_id ? -1 : x.p.user_id > y.p.user_id ? 1 : 0);
    }
    const users = `{${pairs.map((x) => x.p.user_id).join(",")}}`;
    const keys = `{${pairs.map((x) => `"${x.p.key}"`).join(",")}}`;
    return sql.unsafe(`${EXPLAIN}
      select ${LOOKUP_COLUMNS}
      from unnest('${users}'::uuid[], '${keys}'::text[]) as k(user_id, key)
      join ${table} f on f.user_id = k.user_id and f.key = k.key`);
  };
}

function arrays(ids: number[], at: number) {
  return {
    ids: `{${ids.join(",")}}`,
    vals: `{${ids.map((i) => String(i % 997)).join(",")}}`,
    ats: `{${ids.map((_, i) => String(at + i)).join(",")}}`,
  };
}

function insert(sorted: boolean) {
  return (sql: postgres.Sql, b: Batch) => {
    const ids = sorted ? [...b.ids].sort((x, y) => x - y) : b.ids;
    const a = arrays(ids, b.at);
    return sql.unsafe(`${EXPLAIN}
      insert into feed_values (feed_id, value, value_text, created_at, received_at)
      select f, v, null, to_timestamp(c / 1e6), now()
      from unnest('${a.ids}'::int8[], '${a.vals}'::float8[], '${a.ats}'::int8[]) as x(f, v, c)`);
  };
}

function update(sorted: boolean) {
  return (sql: postgres.Sql, b: Batch) => {
    const ids = sorted ? [...b.ids].sort((x, y) => x - y) : b.ids;
    const a = arrays(ids, b.at);
    return sql.unsafe(`${EXPLAIN}
      update feed_last_values l
      set value = x.v, at = x.at
      from (select id, v, to_timestamp(c / 1e6) as at
            from unnest('${a.ids}'::int8[], '${a.vals}'::text[], '${a.ats}'::int8[]) as u(id, v, c)) x
      where l.feed_id = x.id and (l.at is null or l.at < x.at)`);
  };
}

const WAYS: Record<
  string,
  (sql: postgres.Sql, b: Batch) => Promise<postgres.RowList<postgres.Row[]>>
> = {
  "lookup: before sql/016, (user_id, key) index + heap (fillfactor 70)": lookup("feeds_old"),
  "lookup: sql/016, covering index only (fillfactor 100)": lookup("feeds"),
  "lookup: sql/016, keys by user": lookup("feeds", true),
  "insert feed_values, batch order": insert(false),
  "insert feed_values, by feed_id": insert(true),
  "update feed_last_values, batch order": update(false),
  "update feed_last_values, by feed_id": update(true),
};

async function fill(sql: postgres.Sql): Promise<void> {
  const users = Math.ceil(FEEDS / 500);
  await sql`insert into users (id) select gen_random_uuid() from generate_series(1, ${users})`;
  await sql`
    insert into devices (user_id, code)
    select u.id, 'dev' || lpad(d::text, 3, '0')
    from users u cross join generate_series(0, 49) d`;
  // 50 devices × 10 feeds per user, keys as the bench fleet's (bench/fleet.ts).
  await sql`
    insert into feeds (user_id, key, device_id)
    select d.user_id, d.code || '-f' || f, d.id
    from devices d cross join generate_series(0, 9) f
    order by d.user_id, d.code, f`;
  // `feeds` as it was before sql/016: the same rows, fillfactor 70 (sql/007), the unique key
  // without the columns the lookup reads.
  await sql`
    create table feeds_old (like feeds including defaults including constraints
                            including identity) with (fillfactor = 70)`;
  await sql`insert into feeds_old overriding system value select * from feeds order by id`;
  await sql`alter table feeds_old add constraint feeds_old_user_key unique (user_id, key)`;
  // Steady state: every feed has had a reading (the warm-up pass).
  const past = "now() - interval '1 day'";
  await sql.unsafe(`update feed_last_values set value = '20.5', at = ${past}`);
  await sql.unsafe(`
    insert into feed_values (feed_id, value, created_at)
    select id, 20.5, ${past} from feeds`);
  await sql`vacuum full feed_last_values`;
  await sql`vacuum analyze`;
}

async function main(): Promise<void> {
  await withScratchDatabase(args["database-url"], "feedline_bench_fs", async (sql, name) => {
    log(`${name}: filling ${FEEDS} feeds`);
    const t0 = Date.now();
    await fill(sql);
    log(`filled in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    const fleet = await sql<{ id: string; user_id: string; key: string }[]>`
      select id, user_id, key from feeds order by id`;
    const sizes = await sql<{ t: string; mb: number }[]>`
      select t, (pg_relation_size(t) / 1048576.0)::float8 as mb
      from unnest(array['feeds_old', 'feeds_old_user_key', 'feeds', 'feeds_user_key',
                        'feed_last_values', 'feed_last_values_pkey']) t`;
    for (const s of sizes) log(`${s.t}: ${s.mb.toFixed(1)} MB`);
    const [{ pid }] = await sql<{ pid: number }[]>`select pg_backend_pid() as pid`;
    const ways = Object.keys(WAYS).filter((w) => args.only === "" || w.includes(args.only));
    const cpu = new Map(ways.map((w) => [w, 0]));
    const wall = new Map(ways.map((w) => [w, 0]));
    const work = new Map(ways.map((w) => [w, { hit: 0, read: 0, walBytes: 0, walFpi: 0 }]));
    let at = Date.now() * 1000;
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? ways : [...ways].reverse();
      for (const way of order) {
        // A fresh random batch for each statement: no way finds pages another just read.
        const picked = new Set<number>();
        while (picked.size < BATCH) picked.add(Math.floor(Math.random() * fleet.length));
        const rows = [...picked].map((i) => fleet[i]);
        const batch: Batch = {
          pairs: rows,
          ids: rows.map((r) => Number(r.id)),
          at,
        };
        at += BATCH;
        const cpu0 = (await cpuSeconds(pid)) ?? 0;
        const t0 = performance.now();
        const w = workOf(await WAYS[way](sql, batch));
        wall.set(way, wall.get(way)! + performance.now() - t0);
        const acc = work.get(way)!;
        for (const k of Object.keys(w) as (keyof Work)[]) acc[k] += w[k];
        cpu.set(way, cpu.get(way)! + ((await cpuSeconds(pid)) ?? 0) - cpu0);
      }
    }
    const rows = ROUNDS * BATCH;
    const load = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
    const [{ setting }] = await sql`select current_setting('shared_buffers') as setting`;
    console.log(
      `${FEEDS} feeds, ${ROUNDS} rounds of ${BATCH} random feeds per statement, ` +
        `shared_buffers ${setting}, load average ${load}`,
    );
    console.log(
      "| statement | backend CPU µs/row | wall µs/row | pages read/row | pages hit/row | " +
        "WAL bytes/row | full-page images/1000 rows |",
    );
    console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (const way of ways) {
      const w = work.get(way)!;
      console.log(
        `| ${way} | ${(cpu.get(way)! * 1e6 / rows).toFixed(1)} | ${
          (wall.get(way)! * 1e3 / rows).toFixed(1)
        } | ${(w.read / rows).toFixed(2)} | ${(w.hit / rows).toFixed(2)} | ${
          (w.walBytes / rows).toFixed(0)
        } | ${(w.walFpi * 1000 / rows).toFixed(1)} |`,
      );
    }
  }, { keep: args.keep, log });
}

await main();

/**
 * PostgreSQL's cost of rollups in the batch's statement (issue 23; docs/performance.md
 * "Rollups (issue 23)"), free of what other clients of a shared server do: the values'
 * statement of src/ingest/write/values.ts (`writeValuesFast`) on a scratch database, one
 * connection, three ways in interleaved rounds (plain, direct, fold, plain, ...):
 *
 * - plain: no rollups;
 * - direct: three widths upserted per reading (what every width did before sql/015; here
 *   2m,2h,2d, widths without a watermark, so the rounds of the two ways share no rows);
 * - fold: 1m,1h,1d with watermarks (src/db/rollup_folds.ts): the batch upserts 1m only;
 * - direct 3m only: one width without a watermark (the fold way less the watermarks' read).
 *
 * Each round writes `--batch` readings of distinct feeds of `--feeds`, round-robin, as the
 * bench's worst case does (one bucket row per reading and width). Reported: the backend's
 * CPU µs per reading (/proc of the connection's backend, bench/children.ts) and wall µs
 * per reading; then the fold of the hour the fold way wrote (1h from 1m) and its time.
 *
 *   deno run -A bench/rollups_cost.ts --feeds 5000 --batch 2000 --rounds 60
 */
import { foldRollups, prepareRollupFolds } from "../src/db/rollup_folds.ts";
import { writeValuesFast } from "../src/ingest/write/values.ts";
import type { ValueRow } from "../src/ingest/write/rows.ts";
import { cpuSeconds } from "./children.ts";
import { statementBenchArgs, withScratchDatabase } from "./scratch_database.ts";

const { feeds: FEEDS, rounds: ROUNDS, batch: BATCH, databaseUrl } = statementBenchArgs({
  feeds: 5000,
  rounds: 60,
  batch: 2000,
});

const WAYS = {
  plain: null,
  "direct 2m,2h,2d": ["2 minutes", "2 hours", "2 days"],
  "fold 1m,1h,1d": ["1 minutes", "1 hours", "1 days"],
  // One width, no watermark: what the fold way's upsert costs without the watermarks' read.
  "direct 3m only": ["3 minutes"],
} as const;
type Way = keyof typeof WAYS;

function log(msg: string): void {
  console.error(`[rollups-cost] ${msg}`);
}

async function main(): Promise<void> {
  await withScratchDatabase(databaseUrl, "feedline_bench_rc", async (sql, name) => {
    const user = crypto.randomUUID();
    await sql`insert into users (id) values (${user})`;
    const ids = (await sql<{ id: string }[]>`
      insert into feeds (user_id, key)
      select ${user}, 'f' || i from generate_series(1, ${FEEDS}) i returning id`)
      .map((r) => Number(r.id));
    // The hour starts now: the fold way's readings are all after the 1h watermark.
    const hourMs = Math.floor(Date.now() / 3_600_000) * 3_600_000;
    await prepareRollupFolds(sql, [
      { interval: "1 minutes", ms: 60_000 },
      { interval: "1 hours", ms: 3_600_000 },
      { interval: "1 days", ms: 86_400_000 },
    ], new Date(hourMs - 3_600_000));
    const [{ pid }] = await sql<{ pid: number }[]>`select pg_backend_pid() as pid`;
    const cpu = {
      plain: 0,
      "direct 2m,2h,2d": 0,
      "fold 1m,1h,1d": 0,
      "direct 3m only": 0,
    } as Record<Way, number>;
    const wall = { ...cpu };
    let next = 0;
    let tick = 0;
    log(`${name}: ${FEEDS} feeds, ${ROUNDS} rounds of ${BATCH} readings per way`);
    for (let round = 0; round < ROUNDS; round++) {
      const ways = Object.keys(WAYS) as Way[];
      const order = round % 2 === 0 ? ways : ways.toReversed();
      for (const way of order) {
        // One reading a second of device time per round: a minute bucket holds 60 rounds.
        const createdUs = (hourMs + round * 1000) * 1000 + (tick++ % 1000);
        const rows: ValueRow[] = [];
        for (let i = 0; i < BATCH; i++) {
          rows.push({
            feedId: ids[next++ % FEEDS],
            feedKey: "f",
            value: (i % 97) / 4,
            text: null,
            createdUs,
            receivedUs: createdUs,
            message: i,
            watched: false,
          });
        }
        const cpu0 = (await cpuSeconds(pid)) ?? 0;
        const t0 = performance.now();
        await sql.begin((tx) => writeValuesFast(tx, rows, WAYS[way]));
        wall[way] += performance.now() - t0;
        cpu[way] += ((await cpuSeconds(pid)) ?? 0) - cpu0;
      }
    }
    const n = ROUNDS * BATCH;
    console.log(`\n| way | backend CPU µs/reading | wall µs/reading |`);
    console.log(`| --- | ---: | ---: |`);
    for (const way of Object.keys(WAYS) as Way[]) {
      console.log(
        `| ${way} | ${(cpu[way] * 1e6 / n).toFixed(2)} | ${(wall[way] * 1000 / n).toFixed(2)} |`,
      );
    }
    const [{ rows }] = await sql<{ rows: number }[]>`
      select count(*)::int as rows from feed_rollups where width = '1 minute'`;
    const cpu0 = (await cpuSeconds(pid)) ?? 0;
    const t0 = performance.now();
    const folded = await foldRollups(sql, { now: new Date(hourMs + 3_600_000 + 60_000) });
    const ms = performance.now() - t0;
    const cpuMs = (((await cpuSeconds(pid)) ?? 0) - cpu0) * 1000;
    console.log(
      `\nfold of the hour (1h from ${rows} 1m rows): ${folded.steps} step(s), ` +
        `${[...folded.written].map(([w, k]) => `${w}: ${k} rows`).join(", ")}, ` +
        `${ms.toFixed(0)} ms wall, ${cpuMs.toFixed(0)} ms backend CPU`,
    );
    // A full hour of a live fleet: one 1m row per feed and minute, as serve leaves them.
    const from = new Date(hourMs + 3_600_000);
    await sql`
      insert into feed_rollups (feed_id, width, bucket, count, min, max, sum, first_at,
                                last_at, last)
      select f, '1 minute', b, 2, 1, 2, 3, b, b + interval '30 seconds', 2
      from unnest(${ids}::int8[]) f,
           generate_series(${from}::timestamptz, ${from}::timestamptz + interval '59 minutes',
                           interval '1 minute') b`;
    await sql`vacuum analyze feed_rollups`;
    const c1 = (await cpuSeconds(pid)) ?? 0;
    const t1 = performance.now();
    const hour = await foldRollups(sql, {
      now: new Date(hourMs + 2 * 3_600_000 + 60_000),
      maxSteps: 1,
    });
    console.log(
      `fold of a full hour (1h from ${ids.length * 60} 1m rows, one step: the batches wait ` +
        `this long): ${[...hour.written].map(([w, k]) => `${w}: ${k} rows`).join(", ")}, ` +
        `${(performance.now() - t1).toFixed(0)} ms wall, ` +
        `${((((await cpuSeconds(pid)) ?? 0) - c1) * 1000).toFixed(0)} ms backend CPU`,
    );
  });
}

await main();

/**
 * Replay benchmark: generates a capture file of N messages (default 1,000,000), replays
 * it into a fresh database on the real PostgreSQL with `feedline replay` in a child
 * process, then replays it again (every reading a duplicate), and prints messages/s and
 * the child's peak RSS for each run.
 *
 *   deno task bench:replay [--messages N] [--gzip] [--batch-size N]
 *
 * The server is BENCH_DATABASE_URL, else TEST_DATABASE_URL, else
 * postgres://root@127.0.0.1:5432/postgres; a database `feedline_bench_<random>` is
 * created there and dropped at the end.
 */
import { parseArgs } from "node:util";
import postgres from "postgres";
import { formatMicros } from "../src/capture/format.ts";
import { applyMigrations } from "../src/db/migrate.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    messages: { type: "string", default: "1000000" },
    gzip: { type: "boolean", default: false },
    "batch-size": { type: "string", default: "5000" },
  },
});
const MESSAGES = Number(args.values.messages);
const USERS = 100;
const DEVICES_PER_USER = 2;
const FEEDS_PER_DEVICE = 5;
// Every 100th message is a device status; every 200th names a feed that does not exist.
const STATUS_EVERY = 100;
const UNKNOWN_EVERY = 200;

const serverUrl = Deno.env.get("BENCH_DATABASE_URL") ?? Deno.env.get("TEST_DATABASE_URL") ??
  "postgres://root@127.0.0.1:5432/postgres";
const dbName = `feedline_bench_${crypto.randomUUID().replaceAll("-", "").slice(0, 10)}`;
const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
await admin`create database ${admin(dbName)}`;
const url = new URL(serverUrl);
url.pathname = `/${dbName}`;
const dir = await Deno.makeTempDir({ prefix: "feedline-replay-bench-" });

try {
  const users = Array.from({ length: USERS }, () => crypto.randomUUID());
  await register(url.href, users);
  const file = `${dir}/capture.jsonl${args.values.gzip ? ".gz" : ""}`;
  const genStarted = performance.now();
  const expected = await generate(file, users, args.values.gzip);
  const size = (await Deno.stat(file)).size;
  console.log(
    `generated ${MESSAGES.toLocaleString("en-US")} messages (${(size / 1048576).toFixed(0)} MiB${
      args.values.gzip ? ", gzip" : ""
    }) in ${((performance.now() - genStarted) / 1000).toFixed(1)} s`,
  );

  for (const run of ["first replay", "second replay (all duplicates)"]) {
    const summary = await replay(url.href, file, args.values["batch-size"]);
    console.log(
      `${run}: ${summary.messagesPerSec.toLocaleString("en-US")} messages/s, ` +
        `${(summary.elapsedMs / 1000).toFixed(1)} s, peak RSS ${
          Math.round(summary.peakRssBytes / 1048576)
        } MiB; stored ${summary.stored}, duplicates ${summary.duplicates}, statuses ${summary.statuses}, ` +
        `rejected ${JSON.stringify(summary.rejected)}`,
    );
  }
  const sql = postgres(url.href, { max: 1 });
  const [{ n }] = await sql<{ n: number }[]>`select count(*)::int as n from feed_values`;
  await sql.end();
  console.log(`feed_values rows: ${n} (expected ${expected})`);
  if (n !== expected) Deno.exitCode = 1;
} finally {
  await admin`drop database if exists ${admin(dbName)} with (force)`;
  await admin.end();
  await Deno.remove(dir, { recursive: true });
}

function feedTopic(users: string[], i: number): { topic: string; known: boolean } {
  const user = users[i % USERS];
  const device = `dev${Math.floor(i / USERS) % DEVICES_PER_USER}`;
  if (i % UNKNOWN_EVERY === 0) return { topic: `${user}/${device}/feeds/nosuchfeed`, known: false };
  const feed = `f${Math.floor(i / (USERS * DEVICES_PER_USER)) % FEEDS_PER_DEVICE}`;
  return { topic: `${user}/${device}/feeds/${feed}`, known: true };
}

async function register(databaseUrl: string, users: string[]): Promise<void> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    await applyMigrations(sql);
    await sql`insert into users (id) select * from unnest(${users}::uuid[])`;
    for (const user of users) {
      for (let d = 0; d < DEVICES_PER_USER; d++) {
        const [device] = await sql`
          insert into devices (user_id, code) values (${user}, ${`dev${d}`}) returning id`;
        for (let f = 0; f < FEEDS_PER_DEVICE; f++) {
          await sql`insert into feeds (user_id, device_id, key)
                    values (${user}, ${device.id}, ${`f${f}`})
                    on conflict do nothing`;
        }
      }
    }
  } finally {
    await sql.end();
  }
}

/** Writes the capture; returns how many feed_values rows it should produce. */
async function generate(path: string, users: string[], gzip: boolean): Promise<number> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const encoder = new TextEncoder();
  const stream = new TransformStream<Uint8Array, Uint8Array>();
  const sink = (gzip
    ? stream.readable.pipeThrough(
      new CompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
    )
    : stream.readable).pipeTo(file.writable);
  const writer = stream.writable.getWriter();
  const baseUs = Date.UTC(2026, 0, 1) * 1000;
  let stored = 0;
  let chunk: string[] = [];
  for (let i = 0; i < MESSAGES; i++) {
    const receivedAt = formatMicros(baseUs + i * 10);
    let topic: string;
    let payload: string;
    if (i % STATUS_EVERY === 1) {
      topic = `${users[i % USERS]}/dev0/status`;
      payload = i % 200 === 1 ? "online" : "offline";
    } else {
      const t = feedTopic(users, i);
      topic = t.topic;
      payload = (20 + (i % 1000) / 100).toFixed(2);
      if (t.known) stored++;
    }
    chunk.push(
      `{"topic":"${topic}","payload":"${payload}","qos":1,"retain":false,"received_at":"${receivedAt}"}`,
    );
    if (chunk.length === 10_000) {
      await writer.write(encoder.encode(chunk.join("\n") + "\n"));
      chunk = [];
    }
  }
  if (chunk.length > 0) await writer.write(encoder.encode(chunk.join("\n") + "\n"));
  await writer.close();
  await sink;
  return stored;
}

interface Summary {
  messagesPerSec: number;
  elapsedMs: number;
  peakRssBytes: number;
  stored: number;
  duplicates: number;
  statuses: number;
  rejected: Record<string, number>;
}

async function replay(databaseUrl: string, file: string, batchSize: string): Promise<Summary> {
  const main = new URL("../main.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      main,
      "replay",
      "--json",
      "--progress",
      "off",
      "--batch-size",
      batchSize,
      file,
    ],
    env: { DATABASE_URL: databaseUrl },
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`replay exited with ${out.code}`);
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
}

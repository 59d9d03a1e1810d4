import assert from "node:assert/strict";
import type postgres from "postgres";
import { parseReplayArgs, runReplay } from "../commands/replay.ts";
import { parseCaptureLine } from "../src/capture/format.ts";
import { createLogger } from "../src/log.ts";
import { createTestDatabase } from "./support/db.ts";
import { type ServeFixture, startServeFixture } from "./support/fixture.ts";
import { prefixedTopicArgs, publish, waitFor } from "./support/serve.ts";

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "feedline-capture-test-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function replayInto(dbUrl: string, files: string[], prefix: string) {
  const config = parseReplayArgs([
    "--database-url",
    dbUrl,
    "--db-pool-size",
    "2",
    "--progress",
    "off",
    ...prefixedTopicArgs(prefix),
    ...files,
  ], {});
  return await runReplay(config, { out: () => {}, err: () => {}, errIsTerminal: false });
}

async function values(sql: postgres.Sql): Promise<string[]> {
  const rows = await sql<{ key: string; value: number; c: string; r: string }[]>`
    select f.key, v.value, v.created_at::text as c, v.received_at::text as r
    from feed_values v join feeds f on f.id = v.feed_id order by v.received_at, f.key`;
  return rows.map((row) => `${row.key}=${row.value} ${row.c} ${row.r}`);
}

async function readLines(path: string): Promise<string[]> {
  return (await Deno.readTextFile(path)).split("\n").filter((l) => l !== "");
}

async function register(sql: postgres.Sql, user: string): Promise<void> {
  await sql`insert into users (id) values (${user})`;
  await sql`insert into devices (user_id, code) values (${user}, 'dev1')`;
  await sql`insert into feeds (user_id, key) values (${user}, 'temp')`;
}

/**
 * Runs serve with `args` and `--capture <dir>/capture.jsonl` on a fixture whose user also
 * has a device "dev1" (as {@linkcode register} leaves it), lets `traffic` publish, stops
 * serve, and hands the fixture, the capture file and its folder to `check`.
 */
async function withCapture(
  args: string[],
  traffic: (f: ServeFixture) => Promise<void>,
  check: (f: ServeFixture, capture: string, dir: string) => Promise<void>,
): Promise<void> {
  await withTempDir(async (dir) => {
    const capture = `${dir}/capture.jsonl`;
    const fixture = await startServeFixture({
      prepare: (db, user) => db.sql`insert into devices (user_id, code) values (${user}, 'dev1')`,
      args: [...args, "--capture", capture],
    });
    try {
      try {
        await traffic(fixture);
      } finally {
        await fixture.serve.stop();
      }
      await check(fixture, capture, dir);
    } finally {
      await fixture.close();
    }
  });
}

Deno.test("serve --capture records each message once with its exact receive time, and its replay re-creates the same rows", async () => {
  await withCapture(["--batch-interval-ms", "50"], async ({ serve, pub, user }) => {
    // A burst of one feed, a status, and a message for a feed that does not exist.
    for (let i = 0; i < 20; i++) {
      await publish(pub, serve.feedTopic(user, "dev1", "temp"), `${i}`);
    }
    await publish(pub, serve.statusTopic(user, "dev1"), "online");
    await publish(pub, serve.feedTopic(user, "dev1", "nosuch"), "1");
    await waitFor("22 processed", () => serve.metrics.processed.total() === 22);
  }, async ({ db, serve, user }, capture) => {
    const lines = await readLines(capture);
    assert.equal(lines.length, 22);
    for (const l of lines) {
      const parsed = parseCaptureLine(l);
      assert.ok(parsed.ok, l);
      assert.equal(parsed.entry.exactTime, true);
      assert.equal(parsed.entry.qos, 1);
    }
    const live = await values(db.sql);
    assert.equal(live.length, 20);

    // Into a fresh database: the same rows, to the microsecond.
    const fresh = await createTestDatabase();
    try {
      await register(fresh.sql, user);
      const intoFresh = await replayInto(fresh.url, [capture], serve.prefix);
      assert.equal(intoFresh.stored, 20);
      assert.deepEqual(await values(fresh.sql), live);
      const [event] = await fresh.sql`select count(*)::int as n from device_status_events`;
      assert.equal(event.n, 1);
    } finally {
      await fresh.close();
    }

    // Into the database serve wrote live: everything is already there.
    const intoLive = await replayInto(db.url, [capture], serve.prefix);
    assert.equal(intoLive.stored, 0);
    assert.equal(intoLive.duplicates, 20);
    assert.deepEqual(await values(db.sql), live);
    const [events] = await db.sql`select count(*)::int as n from device_status_events`;
    assert.equal(events.n, 1);
    const [rejects] = await db.sql`select count(*)::int as n from ingest_rejects`;
    assert.equal(rejects.n, 1);
  });
});

Deno.test("QoS 0 messages dropped on a full queue are in the capture, marked, and replaying it stores them", async () => {
  // A queue of one that is not written until shutdown: every message after the first
  // finds it full and, at QoS 0, is dropped.
  await withCapture(
    ["--qos", "0", "--qos0-when-full", "drop", "--queue-size", "1", "--batch-interval-ms", "60000"],
    async ({ serve, pub, user }) => {
      for (let i = 0; i < 5; i++) {
        await publish(pub, serve.feedTopic(user, "dev1", "temp"), `${i}`, { qos: 0 });
      }
      await waitFor("5 received", () => serve.metrics.received.total() === 5);
    },
    async ({ db, serve }, capture) => {
      assert.equal(serve.metrics.dropped.total(), 4);
      const lines = (await readLines(capture)).map((l) => JSON.parse(l));
      assert.equal(lines.length, 5);
      assert.equal(lines.filter((l) => l.dropped === "queue_full").length, 4);
      assert.equal((await values(db.sql)).length, 1);

      const totals = await replayInto(db.url, [capture], serve.prefix);
      assert.equal(totals.stored, 4);
      assert.equal(totals.duplicates, 1);
      const stored = await db.sql`select value from feed_values order by created_at`;
      assert.deepEqual(stored.map((r) => r.value), [0, 1, 2, 3, 4]);
    },
  );
});

Deno.test("--capture-max-bytes rotates the capture into numbered files that together hold every message", async () => {
  // Batches of one message, so each commit writes one line and can trigger a rotation.
  await withCapture(
    ["--batch-size", "1", "--capture-max-bytes", "300"],
    async ({ serve, pub, user }) => {
      for (let i = 0; i < 6; i++) await publish(pub, serve.feedTopic(user, "dev1", "temp"), `${i}`);
      await waitFor("6 processed", () => serve.metrics.processed.total() === 6);
    },
    async (_fixture, _capture, dir) => {
      const files = [];
      for await (const entry of Deno.readDir(dir)) files.push(entry.name);
      files.sort();
      assert.ok(files.includes("capture.jsonl.1") && files.includes("capture.jsonl.2"), `${files}`);
      let total = 0;
      for (const f of files) total += (await readLines(`${dir}/${f}`)).length;
      assert.equal(total, 6);
    },
  );
});

Deno.test("serve says where it captures to at start", async () => {
  await withTempDir(async (dir) => {
    const capture = `${dir}/traffic.jsonl`;
    const lines: Record<string, unknown>[] = [];
    const fixture = await startServeFixture({
      args: ["--capture", capture],
      log: createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) }),
    });
    await fixture.close();
    const line = lines.find((l) => l.msg === `capturing to ${capture}`);
    assert.ok(line, `no "capturing to" line in ${JSON.stringify(lines.map((l) => l.msg))}`);
    assert.equal(line.file, capture);
  });
});

Deno.test("the README's capture example does not write into the repository unnoticed", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const gitignore = await Deno.readTextFile(new URL("../.gitignore", import.meta.url));
  const example = /deno task serve --capture (\S+)/.exec(readme);
  assert.ok(example, "README has a capture example");
  const ignored = gitignore.split("\n").includes("*.jsonl") &&
    gitignore.split("\n").includes("*.jsonl.*");
  assert.ok(
    example[1].startsWith("/") || example[1].startsWith("~") || ignored,
    `the example writes ${example[1]}, inside the repository and not in .gitignore`,
  );
});

/**
 * `replay --dry-run` writes nothing anywhere: against a database without the schema it
 * migrates nothing and says in one line what the database needs; with the embedded
 * default it creates no data directory.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { parseReplayArgs, runReplay } from "../commands/replay.ts";
import { encodeCaptureLine } from "../src/capture/format.ts";
import { readMigrations } from "../src/db/migrate.ts";
import { startEmbeddedDatabase } from "../src/embedded/services.ts";
import { FeedlineError } from "../src/errors.ts";
import { runFeedline } from "./support/serve.ts";

/** A database with no feedline schema: on TEST_DATABASE_URL's server, or an in-memory PGlite. */
async function emptyDatabase(): Promise<{ url: string; close(): Promise<void> }> {
  const serverUrl = Deno.env.get("TEST_DATABASE_URL");
  if (!serverUrl) {
    const db = await startEmbeddedDatabase({ dataDir: null, port: 0, maxConnections: 5 });
    return { url: db.url, close: db.close };
  }
  const name = `feedline_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  await admin`create database ${admin(name)}`;
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.href,
    async close() {
      await admin`drop database if exists ${admin(name)} with (force)`;
      await admin.end();
    },
  };
}

async function captureFile(): Promise<string> {
  const file = await Deno.makeTempFile({ prefix: "feedline-dry-run-", suffix: ".jsonl" });
  await Deno.writeTextFile(
    file,
    encodeCaptureLine({
      topic: `${crypto.randomUUID()}/dev1/feeds/temp`,
      payload: new TextEncoder().encode("21.5"),
      qos: 1,
      retain: false,
      receivedAtUs: Date.UTC(2026, 0, 1) * 1000,
    }),
  );
  return file;
}

Deno.test("replay --dry-run against an empty database creates no table and says what it needs", async () => {
  const db = await emptyDatabase();
  const file = await captureFile();
  try {
    const out = await runFeedline(["replay", "--dry-run", "--progress", "off", file], {
      DATABASE_URL: db.url,
    });
    const pending = (await readMigrations()).length;
    assert.equal(out.code, 1);
    assert.match(
      out.stderr,
      new RegExp(
        `^feedline: the database at postgres://\\S+ has no feedline schema \\(${pending} ` +
          "migrations pending\\), and a dry run applies none; run `feedline migrate` first, " +
          "or drop --dry-run\n$",
      ),
    );
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const [{ n }] = await sql`
        select count(*)::int as n from information_schema.tables where table_schema = 'public'`;
      assert.equal(n, 0);
    } finally {
      await sql.end();
    }
  } finally {
    await Deno.remove(file);
    await db.close();
  }
});

Deno.test("replay --dry-run with the embedded default creates no data directory", async () => {
  const parent = await Deno.makeTempDir({ prefix: "feedline-dry-run-" });
  const dataDir = `${parent}/data`;
  const file = await captureFile();
  try {
    const config = parseReplayArgs(["--dry-run", "--data-dir", dataDir, file], {});
    await assert.rejects(
      () => runReplay(config, { out: () => {}, err: () => {}, errIsTerminal: false }),
      (error: unknown) => {
        assert.ok(error instanceof FeedlineError);
        assert.equal(error.code, "SCHEMA_NOT_READY");
        assert.match(error.message, /no embedded database in .*a dry run creates none/);
        return true;
      },
    );
    assert.deepEqual([...Deno.readDirSync(parent)], []);
  } finally {
    await Deno.remove(file);
    await Deno.remove(parent, { recursive: true });
  }
});

import assert from "node:assert/strict";
import { FeedlineError } from "../src/errors.ts";
import { applyMigrations, migrationStatus, readMigrations } from "../src/db/migrate.ts";
import { createTestDatabase } from "./support/db.ts";
import { waitFor } from "./support/serve.ts";

async function migrationDir(files: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "feedline-migrations-" });
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, text);
  }
  return dir;
}

Deno.test("applying migrations twice applies each file once", async () => {
  const db = await createTestDatabase(); // already migrated with sql/
  try {
    assert.deepEqual(await applyMigrations(db.sql), { applied: [] });
    const rows = await db.sql`select version, name from schema_migrations order by version`;
    const files = await readMigrations();
    assert.deepEqual(rows.map((r) => r.name), files.map((f) => f.name));
  } finally {
    await db.close();
  }
});

Deno.test("concurrent migrators apply each file exactly once", async () => {
  const db = await createTestDatabase();
  const dir = await migrationDir({
    "001_a.sql": "create table mig_a (id int);",
    "002_b.sql": "create table mig_b (id int); select pg_sleep(0.2);",
  });
  try {
    await db.sql`drop table schema_migrations`;
    await db.sql`drop table if exists mig_a, mig_b`;
    const results = await Promise.all(
      Array.from({ length: 4 }, () => applyMigrations(db.sql, { dir })),
    );
    const applied = results.flatMap((r) => r.applied).sort();
    assert.deepEqual(applied, ["001_a.sql", "002_b.sql"]);
    const [{ n }] = await db.sql`select count(*)::int as n from schema_migrations`;
    assert.equal(n, 2);
  } finally {
    await db.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a migration changed after it was applied stops migrate with MIGRATION_CHANGED", async () => {
  const db = await createTestDatabase();
  const dir = await migrationDir({ "001_a.sql": "create table mig_c (id int);" });
  try {
    await db.sql`drop table schema_migrations`;
    await applyMigrations(db.sql, { dir });
    await Deno.writeTextFile(`${dir}/001_a.sql`, "create table mig_c (id bigint);");
    await assert.rejects(() => applyMigrations(db.sql, { dir }), (e: unknown) => {
      assert.ok(e instanceof FeedlineError);
      assert.equal(e.code, "MIGRATION_CHANGED");
      assert.match(e.message, /001_a\.sql was changed/);
      return true;
    });
    const status = await migrationStatus(db.sql, { dir });
    assert.deepEqual(status.changed, ["001_a.sql"]);
  } finally {
    await db.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a failing migration is rolled back whole and names the file", async () => {
  const db = await createTestDatabase();
  const dir = await migrationDir({
    "001_ok.sql": "create table mig_ok (id int);",
    "002_bad.sql": "create table mig_half (id int); select * from no_such_table;",
  });
  try {
    await db.sql`drop table schema_migrations`;
    await assert.rejects(() => applyMigrations(db.sql, { dir }), /002_bad\.sql failed/);
    const status = await migrationStatus(db.sql, { dir });
    assert.deepEqual(status.applied.map((m) => m.name), ["001_ok.sql"]);
    assert.deepEqual(status.pending.map((m) => m.name), ["002_bad.sql"]);
    const [{ half }] = await db.sql`select to_regclass('mig_half') is not null as half`;
    assert.equal(half, false);
  } finally {
    await db.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sql/014 carries each feed's last value over to feed_last_values", async () => {
  const db = await createTestDatabase();
  const before = (await readMigrations()).filter((f) => f.version < 14);
  const dir = await migrationDir(Object.fromEntries(before.map((f) => [f.name, f.sql])));
  try {
    // Back to an empty database, migrated up to 013 only.
    await db.sql`drop schema public cascade`;
    await db.sql`create schema public`;
    await applyMigrations(db.sql, { dir });
    const u = crypto.randomUUID();
    await db.sql`insert into users (id) values (${u})`;
    await db.sql`
      insert into feeds (user_id, key, last_value, last_value_at)
      values (${u}, 'temp', '21.5', '2025-06-01T12:00:00Z'), (${u}, 'never', null, null)`;
    // 014 first; later migrations follow it.
    assert.equal((await applyMigrations(db.sql)).applied[0], "014_feed_last_values.sql");
    const rows = await db.sql`
      select f.key, l.value, l.at from feeds f join feed_last_values l on l.feed_id = f.id
      order by f.key`;
    assert.deepEqual(rows.map((r) => [r.key, r.value, r.at?.toISOString() ?? null]), [
      ["never", null, null],
      ["temp", "21.5", "2025-06-01T12:00:00.000Z"],
    ]);
    const [{ n }] = await db.sql`
      select count(*)::int as n from information_schema.columns
      where table_name = 'feeds' and column_name like 'last_value%'`;
    assert.equal(n, 0, "feeds no longer has the columns: a stale reader fails loudly");
  } finally {
    await db.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the schema lets operators register with plain minimal inserts", async () => {
  const db = await createTestDatabase();
  try {
    const u = crypto.randomUUID();
    await db.sql`insert into users (id) values (${u})`;
    await db.sql`insert into devices (user_id, code) values (${u}, 'd1')`;
    await db.sql`insert into feeds (user_id, key) values (${u}, 'temp')`;
    const [feed] = await db
      .sql`select is_active, threshold_min, threshold_max, device_id, value as last_value from feeds join feed_last_values on feed_id = id`;
    assert.deepEqual({ ...feed }, {
      is_active: true,
      threshold_min: null,
      threshold_max: null,
      device_id: null,
      last_value: null,
    });
    const [device] = await db.sql`select status from devices`;
    assert.equal(device.status, "unknown");
  } finally {
    await db.close();
  }
});

Deno.test("deleting a feed, or its user, deletes its readings (sql/007 replaces the foreign key)", async () => {
  const db = await createTestDatabase();
  try {
    const u = crypto.randomUUID();
    await db.sql`insert into users (id) values (${u})`;
    const feeds = await db.sql<{ id: string }[]>`
      insert into feeds (user_id, key) values (${u}, 'a'), (${u}, 'b'), (${u}, 'c') returning id`;
    for (const f of feeds) {
      await db.sql`
        insert into feed_values (feed_id, value, created_at)
        select ${f.id}, g, now() - g * interval '1 minute' from generate_series(1, 3) g`;
    }
    await db.sql`delete from feeds where key = 'a'`;
    const left = await db.sql<{ key: string; n: number }[]>`
      select f.key, count(*)::int as n from feed_values v join feeds f on f.id = v.feed_id
      group by f.key order by f.key`;
    assert.deepEqual(left.map((r) => [r.key, r.n]), [["b", 3], ["c", 3]]);
    const [{ orphans }] = await db.sql<{ orphans: number }[]>`
      select count(*)::int as orphans from feed_values where feed_id = ${feeds[0].id}`;
    assert.equal(orphans, 0);

    await db.sql`delete from users where id = ${u}`;
    const [{ n }] = await db.sql<{ n: number }[]>`select count(*)::int as n from feed_values`;
    assert.equal(n, 0);
  } finally {
    await db.close();
  }
});

Deno.test({
  name: "a feed delete waits for an insert in flight and then deletes its readings too",
  // Two sessions with real locks: the embedded database serves one at a time.
  ignore: !Deno.env.get("TEST_DATABASE_URL"),
}, async () => {
  const db = await createTestDatabase();
  const other = (await import("postgres")).default(db.url, { max: 1, onnotice: () => {} });
  try {
    const u = crypto.randomUUID();
    await db.sql`insert into users (id) values (${u})`;
    const [f] = await db.sql<{ id: string }[]>`
      insert into feeds (user_id, key) values (${u}, 'a') returning id`;
    let deleted = false;
    let deleting: Promise<unknown> = Promise.resolve();
    await db.sql.begin(async (tx) => {
      // An ingest transaction that has written a reading and not committed yet.
      await tx`insert into feed_values (feed_id, value, created_at) values (${f.id}, 1, now())`;
      deleting = other`delete from feeds where id = ${f.id}`.then(() => (deleted = true));
      await waitFor("the delete to wait on a lock", async () => {
        const [{ n }] = await db.sql<{ n: number }[]>`
          select count(*)::int as n from pg_stat_activity
          where wait_event_type = 'Lock' and query like 'delete from feeds%'
            and datname = current_database()`;
        return n === 1;
      });
      assert.equal(deleted, false, "the delete waits for the ingest transaction");
    });
    // The reading committed first; the delete, let through then, removes it.
    await deleting;
    const [{ n }] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from feed_values where feed_id = ${f.id}`;
    assert.equal(n, 0);
  } finally {
    await other.end();
    await db.close();
  }
});

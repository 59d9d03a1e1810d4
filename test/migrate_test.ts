import assert from "node:assert/strict";
import { FeedlineError } from "../src/errors.ts";
import { applyMigrations, migrationStatus, readMigrations } from "../src/db/migrate.ts";
import { createTestDatabase } from "./support/db.ts";

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

Deno.test("the schema lets operators register with plain minimal inserts", async () => {
  const db = await createTestDatabase();
  try {
    const u = crypto.randomUUID();
    await db.sql`insert into users (id) values (${u})`;
    await db.sql`insert into devices (user_id, code) values (${u}, 'd1')`;
    await db.sql`insert into feeds (user_id, key) values (${u}, 'temp')`;
    const [feed] = await db
      .sql`select is_active, threshold_min, threshold_max, device_id, last_value from feeds`;
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

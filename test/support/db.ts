/**
 * A fresh, migrated database per test. With `TEST_DATABASE_URL` set (a real
 * PostgreSQL, e.g. `postgres://root@127.0.0.1:5432/postgres`) each test gets
 * its own `feedline_test_<random>` database on that server, dropped afterwards;
 * without it, an in-memory PGlite served by `startEmbeddedDatabase`.
 *
 * @module
 */

import postgres from "postgres";
import { startEmbeddedDatabase } from "../../src/embedded/services.ts";
import { applyMigrations } from "../../src/db/migrate.ts";

/** A migrated test database; `close()` ends `sql` and removes the database. */
export interface TestDatabase {
  sql: postgres.Sql;
  /** Connection URL, for code under test that opens its own pool. */
  url: string;
  close(): Promise<void>;
}

// Room for the helper's pool plus a pool or two opened by the code under test:
// the embedded server (src/embedded/pglite_server.ts) drops connections beyond this limit.
const EMBEDDED_MAX_CONNECTIONS = 10;

// Migrations print "already exists, skipping" notices; they are noise in tests.
const quiet = { onnotice: () => {} };

/**
 * Creates a migrated database; the caller must `close()` it.
 *
 * @example
 * ```ts
 * const db = await createTestDatabase();
 * try {
 *   await db.sql`select 1`;
 * } finally {
 *   await db.close();
 * }
 * ```
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const serverUrl = Deno.env.get("TEST_DATABASE_URL");
  const db = serverUrl ? await _createOnServer(serverUrl) : await _createEmbedded();
  try {
    await applyMigrations(db.sql);
  } catch (err) {
    await db.close();
    throw err;
  }
  return db;
}

/**
 * Runs `fn` with a fresh migrated database and removes it afterwards, also
 * when `fn` throws.
 *
 * @example
 * ```ts
 * Deno.test("a value row is stored", () =>
 *   withTestDatabase(async (sql) => {
 *     await sql`select 1`;
 *   }));
 * ```
 */
export async function withTestDatabase(
  fn: (sql: postgres.Sql, url: string) => Promise<void>,
): Promise<void> {
  const db = await createTestDatabase();
  try {
    await fn(db.sql, db.url);
  } finally {
    await db.close();
  }
}

/**
 * Runs `fn` on a fresh database holding one user with device `d1` and feed `temp`, the
 * smallest fleet a reading can be stored for; `more` adds rows before `fn` runs.
 */
export async function withOneFeed(
  fn: (db: TestDatabase, user: string) => Promise<void>,
  more?: (db: TestDatabase, user: string) => Promise<void>,
): Promise<void> {
  const db = await createTestDatabase();
  const user = crypto.randomUUID();
  try {
    await db.sql`insert into users (id) values (${user})`;
    await db.sql`insert into devices (user_id, code) values (${user}, 'd1')`;
    await db.sql`insert into feeds (user_id, key) values (${user}, 'temp')`;
    await more?.(db, user);
    await fn(db, user);
  } finally {
    await db.close();
  }
}

async function _createOnServer(serverUrl: string): Promise<TestDatabase> {
  const name = `feedline_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const admin = postgres(serverUrl, { max: 1, ...quiet });
  try {
    await admin`create database ${admin(name)}`;
  } catch (err) {
    await admin.end();
    throw err;
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const sql = postgres(url.href, { max: 2, ...quiet });
  return {
    sql,
    url: url.href,
    async close() {
      await sql.end();
      // `with (force)` (PostgreSQL 13+) also ends connections that the code
      // under test left open, so a leaky test cannot leave the database behind.
      await admin`drop database if exists ${admin(name)} with (force)`;
      await admin.end();
    },
  };
}

async function _createEmbedded(): Promise<TestDatabase> {
  const db = await startEmbeddedDatabase({
    dataDir: null,
    port: 0,
    maxConnections: EMBEDDED_MAX_CONNECTIONS,
  });
  const sql = postgres(db.url, { max: 2, ssl: false, ...quiet });
  return {
    sql,
    url: db.url,
    async close() {
      await sql.end();
      await db.close();
    },
  };
}

/**
 * Makes the database refuse a reading of `value` at COMMIT (a deferred constraint
 * trigger raising `no <value>, checked at commit`): the transaction fails as a whole, so
 * the processor bisects its batch down to that reading.
 */
export async function refuseValueAtCommit(db: TestDatabase, value: number): Promise<void> {
  const name = `refuse_${value}`;
  await db.sql.unsafe(`
    create function ${name}() returns trigger language plpgsql as $$
    begin
      if new.value = ${value} then raise exception 'no ${value}, checked at commit'; end if;
      return null;
    end $$;
    create constraint trigger ${name} after insert on feed_values
      deferrable initially deferred for each row execute function ${name}();`);
}

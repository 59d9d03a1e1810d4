/**
 * The usual set-up of a serve test in one call: a fresh database with one registered
 * user and feeds, a broker, serve running on its own topic prefix, and a publisher.
 *
 * @module
 */
import type { MqttClient } from "mqtt";
import type { ServeConfig, ServeHooks } from "../../commands/serve.ts";
import type { Logger } from "../../src/log.ts";
import type { AuditOption } from "./audit.ts";
import { createTestBroker, type TestBroker } from "./broker.ts";
import { createTestDatabase, type TestDatabase } from "./db.ts";
import { connectClient, endClient, startTestServe, type TestServe } from "./serve.ts";

/** What a serve test works with; `close()` tears it all down. */
export interface ServeFixture {
  db: TestDatabase;
  broker: { url: string; protocolVersion: 4 | 5 };
  serve: TestServe;
  pub: MqttClient;
  /** The registered user. */
  user: string;
  /** Rows in feed_values. */
  storedCount(): Promise<number>;
  close(): Promise<void>;
}

/** Options of {@linkcode startServeFixture}. */
export interface ServeFixtureOptions {
  /** Feeds registered for the user (active, no thresholds). Default: `["temp"]`. */
  feeds?: string[];
  /** A device registered for the user, with the feeds attached to it. Default: none. */
  device?: string;
  /** Runs after the user, device and feeds are registered, before serve starts. */
  prepare?: (db: TestDatabase, user: string) => Promise<unknown>;
  /** Extra serve flags. */
  args?: string[];
  /** Serve's environment (see {@linkcode startTestServe}). */
  env?: Record<string, string>;
  /** Serve's topic prefix, for flags that must name it; default: a unique one. */
  prefix?: string;
  /** Where serve logs (see {@linkcode startTestServe}); default: nowhere. */
  log?: Logger | ((config: ServeConfig) => Logger);
  /** Replaced parts of serve (see {@linkcode startTestServe}). */
  hooks?: ServeHooks;
  /** A broker of the test's own (e.g. a private Mosquitto); default: the test broker. */
  broker?: { url: string; protocolVersion: 4 | 5 };
  /** Serve's DATABASE_URL, e.g. through a proxy; default: the test database's. */
  databaseUrl?: (db: TestDatabase) => string | Promise<string>;
  /**
   * Serve's MQTT_URL, e.g. through a proxy or with credentials; default: the broker's.
   * The publisher always connects to the broker directly.
   */
  mqttUrl?: (broker: { url: string }) => string | Promise<string>;
  /**
   * How serve's books are audited when it stops (test/support/audit.ts); default: against
   * the test database, directly (also when serve goes through `databaseUrl`'s proxy).
   */
  audit?: AuditOption;
}

/** Starts a database, a broker, serve and a publisher. */
export async function startServeFixture(opts: ServeFixtureOptions = {}): Promise<ServeFixture> {
  const db = await createTestDatabase();
  let ownBroker: TestBroker | null = null;
  let serve: TestServe | null = null;
  try {
    const broker = opts.broker ?? (ownBroker = await createTestBroker());
    const user = crypto.randomUUID();
    await db.sql`insert into users (id) values (${user})`;
    if (opts.device !== undefined) {
      await db.sql`insert into devices (user_id, code) values (${user}, ${opts.device})`;
    }
    for (const key of opts.feeds ?? ["temp"]) {
      await db.sql`insert into feeds (user_id, key, device_id) values (${user}, ${key},
        (select id from devices where user_id = ${user} and code = ${opts.device ?? null}))`;
    }
    await opts.prepare?.(db, user);
    serve = await startTestServe({
      databaseUrl: (await opts.databaseUrl?.(db)) ?? db.url,
      mqttUrl: (await opts.mqttUrl?.(broker)) ?? broker.url,
      protocolVersion: broker.protocolVersion,
      args: opts.args,
      env: opts.env,
      prefix: opts.prefix,
      log: opts.log,
      hooks: opts.hooks,
      audit: opts.audit ?? { databaseUrl: db.url },
    });
    const pub = await connectClient(broker.url, broker.protocolVersion);
    const running = serve;
    return {
      db,
      broker,
      serve: running,
      pub,
      user,
      async storedCount() {
        const [{ n }] = await db.sql`select count(*)::int as n from feed_values`;
        return n;
      },
      async close() {
        try {
          await endClient(pub, true);
          // Audits serve's books: throws when its counts and the tables disagree.
          await running.stop();
        } finally {
          await ownBroker?.close();
          await db.close();
        }
      },
    };
  } catch (error) {
    await serve?.stop();
    await ownBroker?.close();
    await db.close();
    throw error;
  }
}

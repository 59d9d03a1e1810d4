/**
 * The usual set-up of a serve test in one call: a fresh database with one registered
 * user and feeds, a broker, serve running on its own topic prefix, and a publisher.
 *
 * @module
 */
import type { MqttClient } from "mqtt";
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
  /** Extra serve flags. */
  args?: string[];
  /** A broker of the test's own (e.g. a private Mosquitto); default: the test broker. */
  broker?: { url: string; protocolVersion: 4 | 5 };
  /** Serve's DATABASE_URL, e.g. through a proxy; default: the test database's. */
  databaseUrl?: (db: TestDatabase) => string | Promise<string>;
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
    for (const key of opts.feeds ?? ["temp"]) {
      await db.sql`insert into feeds (user_id, key) values (${user}, ${key})`;
    }
    serve = await startTestServe({
      databaseUrl: (await opts.databaseUrl?.(db)) ?? db.url,
      mqttUrl: broker.url,
      protocolVersion: broker.protocolVersion,
      args: opts.args,
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
        await endClient(pub, true);
        await running.stop();
        await ownBroker?.close();
        await db.close();
      },
    };
  } catch (error) {
    await serve?.stop();
    await ownBroker?.close();
    await db.close();
    throw error;
  }
}

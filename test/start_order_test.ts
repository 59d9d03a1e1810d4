/**
 * No work before serve can run (issue 19): a start that is refused (here: a taken
 * `--http` address) must neither commit nor acknowledge the messages waiting in serve's
 * broker session, so the next start stores each of them exactly once.
 */
import assert from "node:assert/strict";
import { FeedlineError } from "../src/errors.ts";
import { createTestBroker } from "./support/broker.ts";
import { createTestDatabase } from "./support/db.ts";
import {
  connectClient,
  endClient,
  publish,
  startTestServe,
  uniquePrefix,
  waitFor,
} from "./support/serve.ts";

Deno.test("a start refused by a taken --http address leaves the session's messages for the next start", async () => {
  const db = await createTestDatabase();
  const broker = await createTestBroker();
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const taken = (busy.addr as Deno.NetAddr).port;
  // One prefix, hence one client id: every start below resumes the same broker session.
  const prefix = uniquePrefix();
  const user = crypto.randomUUID();
  const start = (args: string[] = []) =>
    startTestServe({ databaseUrl: db.url, mqttUrl: broker.url, ...broker, prefix, args });
  const pub = await connectClient(broker.url, broker.protocolVersion);
  try {
    await db.sql`insert into users (id) values (${user})`;
    await db.sql`insert into feeds (user_id, key) values (${user}, 'temp')`;
    // The first start creates the session; while serve is down, readings without a device
    // `ts` wait in it (their key is the receive time: a second store is a second row).
    await (await start()).stop();
    const topic = `${prefix}/${user}/dev/feeds/temp`;
    for (const value of ["1", "2", "3"]) await publish(pub, topic, value);

    await assert.rejects(() => start(["--http", `127.0.0.1:${taken}`]), (error: unknown) => {
      assert.ok(error instanceof FeedlineError);
      assert.equal(error.code, "ADDRESS_IN_USE");
      return true;
    });

    const serve = await start();
    try {
      // A sentinel behind the backlog: once it is stored, so is everything before it.
      await publish(pub, topic, "99");
      const values = () =>
        db.sql<{ v: number }[]>`select value::int as v from feed_values order by v`;
      await waitFor("the sentinel", async () => (await values()).some((r) => r.v === 99));
      assert.deepEqual((await values()).map((r) => r.v), [1, 2, 3, 99]);
    } finally {
      await serve.stop();
    }
  } finally {
    busy.close();
    await endClient(pub, true);
    await broker.close();
    await db.close();
  }
});

/**
 * The tenant isolation recipe (deploy/mosquitto/, docs/security.md): a private Mosquitto
 * with the recipe's settings and ACL file, a password file made here with
 * mosquitto_passwd, serve logged in as `feedline`, and two users whose devices log in
 * with their user id. What A may not do is asserted on the database and on what B
 * receives, not on A's client (Mosquitto may answer "not authorized" or drop silently).
 */
import assert from "node:assert/strict";
import type { MqttClient } from "mqtt";
import { parseServeArgs, type RunningServe, startServe } from "../commands/serve.ts";
import { silentLogger } from "../src/log.ts";
import { startAudited } from "./support/audit.ts";
import { type Mosquitto, startMosquitto } from "./support/broker.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { connectClient, endClient, HAVE_MOSQUITTO, waitFor } from "./support/serve.ts";

const MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd";
const HAVE_PASSWD = (() => {
  try {
    return Deno.statSync(MOSQUITTO_PASSWD).isFile;
  } catch {
    return false;
  }
})();
const ignore = !HAVE_MOSQUITTO || !HAVE_PASSWD;
if (ignore) {
  console.warn("tenant_acl_test skipped: needs /usr/sbin/mosquitto and /usr/bin/mosquitto_passwd");
}

const RECIPE = new URL("../deploy/mosquitto/", import.meta.url);

async function passwd(args: string[]) {
  const out = await new Deno.Command(MOSQUITTO_PASSWD, { args, stderr: "piped", stdout: "piped" })
    .output();
  if (!out.success) throw new Error(`mosquitto_passwd: ${new TextDecoder().decode(out.stderr)}`);
}

/** Publishes; resolves either way (a refused publish is the broker's business). */
function tryPublish(client: MqttClient, topic: string, payload: string): Promise<string> {
  return new Promise((resolve) => {
    // A broker that never answers must fail the test, not hang the suite.
    const timer = setTimeout(() => resolve("no PUBACK within 10 s"), 10_000);
    client.publish(topic, payload, { qos: 1 }, (error) => {
      clearTimeout(timer);
      resolve(error ? error.message : "ok");
    });
  });
}

/** Collects every message a client receives. */
function collect(client: MqttClient): { topic: string; payload: string }[] {
  const got: { topic: string; payload: string }[] = [];
  client.on("message", (topic, payload) => got.push({ topic, payload: payload.toString() }));
  return got;
}

Deno.test({
  name: "Mosquitto ACL recipe: a user writes only its own feeds and reads only its own errors",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "feedline-acl-" });
    const a = crypto.randomUUID();
    const b = crypto.randomUUID();
    const pw = { feedline: "feedline-pw-1", [a]: "user-a-pw-1", [b]: "user-b-pw-1" };
    let broker: Mosquitto | null = null;
    let db: TestDatabase | null = null;
    let serve: RunningServe | null = null;
    const clients: MqttClient[] = [];
    try {
      await passwd(["-c", "-b", `${dir}/passwd`, "feedline", pw.feedline]);
      await passwd(["-b", `${dir}/passwd`, a, pw[a]]);
      await passwd(["-b", `${dir}/passwd`, b, pw[b]]);
      await Deno.copyFile(new URL("acl", RECIPE), `${dir}/acl`);
      // The recipe as shipped, pointed at this test's files.
      const conf = (await Deno.readTextFile(new URL("mosquitto.conf", RECIPE)))
        .replaceAll("/etc/mosquitto/feedline/", `${dir}/`);
      broker = await startMosquitto({ config: conf });

      await assert.rejects(connectClient(broker.url, 5), "anonymous clients are refused");
      await assert.rejects(
        connectClient(broker.url, 5, { username: a, password: "wrong" }),
        "a wrong password is refused",
      );

      db = await createTestDatabase();
      const config = parseServeArgs([
        "--database-url",
        db.url,
        "--mqtt-url",
        broker.url,
        "--mqtt-username",
        "feedline",
        "--client-id",
        `feedline-acl-${a.slice(0, 8)}`,
        "--http",
        "off",
        "--db-pool-size",
        "2",
        // Anything that gets through creates rows: the strictest check of what is refused.
        "--auto-register",
        "--batch-interval-ms",
        "100",
      ], { MQTT_PASSWORD: pw.feedline });
      // Its stop() audits its books (test/support/audit.ts).
      serve = await startAudited(
        { databaseUrl: db.url },
        silentLogger,
        (log) => startServe(config, log),
      );
      await waitFor("serve subscribed", () => serve!.source.subscribed);

      const clientA = await connectClient(broker.url, 5, {
        username: a,
        password: pw[a],
        clientId: `${a}-dev1`,
      });
      clients.push(clientA);
      const clientB = await connectClient(broker.url, 5, {
        username: b,
        password: pw[b],
        clientId: `${b}-dev1`,
      });
      clients.push(clientB);
      const gotA = collect(clientA);
      const gotB = collect(clientB);
      await clientA.subscribeAsync(["#", `${b}/errors`, `${b}/+/feeds/+`], { qos: 1 });
      await clientB.subscribeAsync(`${b}/errors`, { qos: 1 });

      // A tries B's feed, B's status, and B's errors topic (a forged reject notice)...
      await tryPublish(clientA, `${b}/intruded/feeds/temp`, "99");
      await tryPublish(clientA, `${b}/intruded/status`, "online");
      await tryPublish(clientA, `${b}/errors`, '{"forged":true}');
      // ...and then writes its own reading, which lands after them (one connection, in order).
      await tryPublish(clientA, `${a}/dev1/feeds/temp`, "21.5");
      // B writes its own reading, and one feedline rejects: feedback on B's errors topic.
      await tryPublish(clientB, `${b}/dev1/feeds/temp`, "22.5");
      await tryPublish(clientB, `${b}/dev1/feeds/temp`, '{"value": 1, "ts": "yesterday"}');

      const sql = db.sql;
      const rowsOf = async (user: string) =>
        await sql<{ feed: string; value: number }[]>`
          select f.key as feed, v.value
          from feed_values v join feeds f on f.id = v.feed_id
          where f.user_id = ${user} order by v.value`;
      await waitFor("A's own reading stored", async () => (await rowsOf(a)).length === 1);
      await waitFor("B's own reading stored", async () => (await rowsOf(b)).length === 1);
      await waitFor(
        "B got its reject feedback",
        () => gotB.some((m) => /bad_timestamp/.test(m.payload)),
      );
      // Anything of B's that reached A came before a sentinel serve publishes now on A's
      // errors topic: B's readings were routed before serve received them, and serve's
      // feedback to B went out on the connection the sentinel goes out on.
      const sentinel = JSON.stringify({ sentinel: crypto.randomUUID() });
      await tryPublish(serve.source.client, `${a}/errors`, sentinel);
      await waitFor("A's sentinel", () => gotA.some((m) => m.payload === sentinel));

      assert.deepEqual([...await rowsOf(a)], [{ feed: "temp", value: 21.5 }]);
      assert.deepEqual([...await rowsOf(b)], [{ feed: "temp", value: 22.5 }]);
      const devicesOfB = await sql`select code from devices where user_id = ${b} order by code`;
      assert.deepEqual([...devicesOfB].map((r) => r.code), ["dev1"], "A created no device for B");
      assert.deepEqual(
        gotA.filter((m) => m.topic.startsWith(b)),
        [],
        "A read nothing of B: not its errors, not its feeds",
      );
      assert.ok(!gotB.some((m) => m.payload.includes("forged")), "A cannot forge B's errors");
    } finally {
      for (const client of clients) await endClient(client, true);
      await serve?.stop();
      await db?.close();
      await broker?.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

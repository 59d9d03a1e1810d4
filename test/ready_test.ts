/**
 * Start-up as a newcomer meets it (docs/operations.md, "Starting"): one `ready` line, after
 * serve subscribed, with a publish command that lands as written and the status page; and
 * with port 1883 (here: the asked-for port) taken, the embedded broker's fallback port is
 * the same on the next start of the same data dir, and said in a warning.
 */
import assert from "node:assert/strict";
import { parseServeArgs, startServe } from "../commands/serve.ts";
import { createLogger } from "../src/log.ts";
import { startAudited } from "./support/audit.ts";
import { createTestDatabase } from "./support/db.ts";
import { connectClient, endClient, publish, waitFor } from "./support/serve.ts";

Deno.test("one ready line says where to publish and where to look; a fallback port is kept", async () => {
  const db = await createTestDatabase();
  const dataDir = await Deno.makeTempDir({ prefix: "feedline-ready-" });
  // Stands in for a system Mosquitto on 1883.
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const busyPort = (busy.addr as Deno.NetAddr).port;
  const config = parseServeArgs([
    ...["--database-url", db.url, "--embedded-mqtt-port", String(busyPort)],
    ...["--data-dir", dataDir, "--http", "127.0.0.1:0", "--auto-register"],
    ...["--batch-interval-ms", "50", "--db-pool-size", "2", "--log-format", "json"],
  ], {});
  const start = async () => {
    const lines: Record<string, unknown>[] = [];
    const log = createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) });
    const serve = await startAudited({ databaseUrl: db.url }, log, (l) => startServe(config, l));
    await waitFor("the ready line", () => lines.some((l) => l.msg === "ready"));
    return { serve, lines };
  };
  try {
    const first = await start();
    let port: string;
    try {
      const msgs = first.lines.map((l) => l.msg);
      assert.equal(msgs.filter((m) => m === "ready").length, 1);
      assert.ok(msgs.indexOf("ready") > msgs.indexOf("subscribed"), "ready comes last");
      const ready = first.lines.find((l) => l.msg === "ready")!;
      port = new URL(first.serve.mqttUrl).port;
      assert.notEqual(port, String(busyPort));
      const moved = first.lines.find((l) => l.level === "warn" && /is taken/.test(String(l.msg)));
      assert.match(String(moved?.msg), new RegExp(`publish to -p ${port}, not ${busyPort}`));

      // The command as printed: host, port, topic and payload.
      const cmd = String(ready.publish);
      const m = /^mosquitto_pub -h (\S+) -p (\d+) -t (\S+) -m (\S+)$/.exec(cmd);
      assert.ok(m, cmd);
      assert.equal(m[2], port);
      const pub = await connectClient(`mqtt://${m[1]}:${m[2]}`, 4);
      await publish(pub, m[3], m[4], { qos: 0 }); // mosquitto_pub's default
      await endClient(pub);
      await waitFor("the published reading stored", async () => {
        const [{ n }] = await db.sql`select count(*)::int as n from feed_values`;
        return n === 1;
      });
      const page = await fetch(String(ready.status_page));
      assert.equal(page.status, 200);
      await page.body?.cancel();
    } finally {
      await first.serve.stop();
    }

    const second = await start();
    try {
      assert.equal(new URL(second.serve.mqttUrl).port, port, "the same fallback port");
      const moved = second.lines.find((l) => l.level === "warn" && /is taken/.test(String(l.msg)));
      assert.match(String(moved?.remembered), /same port/);
    } finally {
      await second.serve.stop();
    }
  } finally {
    busy.close();
    await db.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

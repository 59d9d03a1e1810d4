/**
 * One embedded data directory, one process: a second serve is refused naming the first;
 * migrate and replay use the running serve's database instead of opening their own.
 */
import assert from "node:assert/strict";
import { readEndpoints } from "../src/embedded/endpoints.ts";
import { auditedProcess, verifyEmbeddedBooks } from "./support/audit.ts";
import { runFeedline, spawnServe } from "./support/serve.ts";

/** `feedline ARGS`, with no broker, database or HTTP address from the environment. */
const feedline = (args: string[]) =>
  runFeedline(args, { MQTT_URL: "", DATABASE_URL: "", HTTP_ADDR: "" });

Deno.test("a second serve on one data directory is refused; migrate and replay use the running serve's database", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "feedline-datadir-" });
  const ports = ["--embedded-mqtt-port", "0", "--embedded-db-port", "0", "--http", "off"];
  const serve = spawnServe(["--data-dir", dataDir, ...ports]);
  try {
    await serve.waitForLog("subscribed", 90_000);
    const endpoints = await readEndpoints(dataDir);
    assert.ok(endpoints?.databaseUrl);

    const second = await feedline(["serve", "--data-dir", dataDir, ...ports]);
    assert.equal(second.code, 1);
    assert.equal(
      second.stderr.trim(),
      `feedline: ${dataDir} is in use by feedline serve (pid ${serve.child.pid}); ` +
        "stop it first, or use --data-dir to pick another folder",
    );
    assert.deepEqual(await readEndpoints(dataDir), endpoints, "endpoints.json is left alone");

    const status = await feedline(["migrate", "--status", "--data-dir", dataDir]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`^database: ${endpoints.databaseUrl}`, "m"));
    assert.match(status.stdout, /^applied /m);

    const file = `${dataDir}/sub.txt`;
    const user = crypto.randomUUID();
    await Deno.writeTextFile(file, `${user}/dev1/feeds/temp {"value": 1, "ts": 1767225600}\n`);
    const replayed = await feedline(["replay", "--progress", "off", "--data-dir", dataDir, file]);
    assert.equal(replayed.code, 0, replayed.stderr);
    assert.match(replayed.stdout, /stored\s+1 readings/);
  } finally {
    assert.equal(await serve.signal("SIGTERM"), 0);
  }
  // Once serve is gone, its lock is too: migrate opens the database itself.
  const after = await feedline(["migrate", "--status", "--data-dir", dataDir]);
  assert.equal(after.code, 0, after.stderr);
  assert.match(after.stdout, /^database: embedded PostgreSQL/m);
  // serve's books (test/support/audit.ts); the reading replay stored is the test's own.
  await verifyEmbeddedBooks(dataDir, [auditedProcess(serve)], {
    otherWrites: { readings: 1 },
  });
  await Deno.remove(dataDir, { recursive: true });
});

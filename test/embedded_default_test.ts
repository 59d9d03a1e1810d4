/**
 * The two-command promise: `feedline serve` with no MQTT_URL and no DATABASE_URL runs an
 * embedded broker and database, and a message published with any MQTT client lands.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { readEndpoints } from "../src/embedded/endpoints.ts";
import { verifyEmbeddedBooks } from "./support/audit.ts";
import { freePort } from "./support/broker.ts";
import { connectClient, endClient, publish, waitFor } from "./support/serve.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

Deno.test("serve with no configuration stores a published message in its embedded database", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "feedline-embedded-" });
  const httpPort = await freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      MAIN,
      "serve",
      "--embedded-mqtt-port",
      "0",
      "--embedded-db-port",
      "0",
      "--http",
      `127.0.0.1:${httpPort}`,
      "--data-dir",
      dataDir,
    ],
    env: { MQTT_URL: "", DATABASE_URL: "", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const reading = (async () => {
    const decoder = new TextDecoderStream();
    let buffer = "";
    for await (const chunk of child.stdout.pipeThrough(decoder)) {
      buffer += chunk;
      const parts = buffer.split("\n");
      buffer = parts.pop()!;
      lines.push(...parts);
    }
  })();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  try {
    await waitFor(
      "serve to subscribe",
      () => lines.some((l) => l.includes('"msg":"subscribed"')),
      60_000,
    );
    // Off a terminal, logs are JSON lines.
    for (const line of lines) JSON.parse(line);
    const endpoints = await readEndpoints(dataDir);
    assert.ok(endpoints?.databaseUrl, "serve writes where its embedded services are");
    assert.ok(lines.some((l) => l.includes(dataDir)), "serve prints where the data lives");

    const user = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
    const client = await connectClient(endpoints.mqttUrl, 4);
    await publish(client, `${user}/dev1/feeds/temperature`, "21.5");
    await endClient(client);

    const sql = postgres(endpoints.databaseUrl, { max: 1, ssl: false, onnotice: () => {} });
    try {
      await waitFor("the reading to be stored", async () => {
        const rows = await sql`select value from feed_values`;
        return rows.length === 1 && rows[0].value === 21.5;
      }, 30_000);
    } finally {
      await sql.end();
    }
    const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    assert.match(metrics, /^feedline_readings_stored_total 1$/m);

    child.kill("SIGTERM");
    const status = await child.status;
    assert.equal(status.code, 0, "SIGTERM is a clean exit");
    assert.equal(await readEndpoints(dataDir), null, "the endpoints file is removed on exit");
    // Its books against its embedded database (test/support/audit.ts).
    await reading;
    const stopped = lines.map((l) => JSON.parse(l)).find((l) => l.msg === "stopped") ?? null;
    await verifyEmbeddedBooks(dataDir, [{ stopped }]);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
    await child.status;
    await reading;
    await stderr.cancel();
    await Deno.remove(dataDir, { recursive: true });
  }
});

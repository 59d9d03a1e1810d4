/**
 * Busy ports on a first run: in the embedded default serve moves its HTTP server and its
 * embedded database to free ports and says so, and the next start goes back to the same
 * ones (`<data-dir>/ports.json`); an HTTP address the user gave is not moved,
 * and the start fails with one line naming it.
 */
import assert from "node:assert/strict";
import { auditedProcess, verifyEmbeddedBooks } from "./support/audit.ts";
import { spawnServe } from "./support/serve.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** Holds `port` on 127.0.0.1 if it is free (if it is not, it is taken anyway). */
function occupy(port: number): Deno.Listener | null {
  try {
    return Deno.listen({ hostname: "127.0.0.1", port });
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) return null;
    throw error;
  }
}

Deno.test("embedded default: taken HTTP and database ports move to free ones, logged, and the next start keeps them", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "feedline-ports-" });
  const http = occupy(8080);
  const dbHolder = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dbPort = (dbHolder.addr as Deno.NetAddr).port;
  const args = [
    "--data-dir",
    dataDir,
    "--embedded-mqtt-port",
    "0",
    "--embedded-db-port",
    String(dbPort),
  ];
  const serve = spawnServe(args, { HTTP_ADDR: "" });
  try {
    const dbMoved = await serve.waitForLog(
      `port ${dbPort} is taken; the embedded database uses another`,
      60_000,
    );
    assert.match(String(dbMoved.url), /^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/);
    assert.ok(!String(dbMoved.url).endsWith(`:${dbPort}/postgres`));
    const httpMoved = await serve.waitForLog(
      "port 8080 is taken; the status page and /metrics use another",
      60_000,
    );
    const res = await fetch(new URL("/healthz", String(httpMoved.url)));
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.equal(await serve.signal("SIGTERM"), 0);

    // The next start of the data dir, its port still taken, goes back to the same one.
    const again = spawnServe(args, { HTTP_ADDR: "" });
    try {
      const dbAgain = await again.waitForLog(
        `port ${dbPort} is taken; the embedded database uses another`,
        60_000,
      );
      assert.equal(dbAgain.url, dbMoved.url);
      assert.equal(dbAgain.remembered, "the same port as at the last start of this data dir");
      assert.equal(await again.signal("SIGTERM"), 0);
    } finally {
      await again.signal("SIGTERM");
    }
    // Their books against its embedded database (test/support/audit.ts).
    await verifyEmbeddedBooks(dataDir, [auditedProcess(serve), auditedProcess(again)]);
  } finally {
    assert.equal(await serve.signal("SIGTERM"), 0);
    http?.close();
    dbHolder.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("a taken --http address stops serve with one line naming it and the flag", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "feedline-ports-" });
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (busy.addr as Deno.NetAddr).port;
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        MAIN,
        "serve",
        "--data-dir",
        dataDir,
        "--embedded-mqtt-port",
        "0",
        "--embedded-db-port",
        "0",
        "--http",
        `127.0.0.1:${port}`,
        "--log-format",
        "json",
      ],
      env: { NO_COLOR: "1", MQTT_URL: "", DATABASE_URL: "" },
      stdout: "null",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr).trim();
    assert.equal(out.code, 1);
    assert.equal(
      stderr,
      `feedline: cannot listen on 127.0.0.1:${port}: the address is already in use ` +
        "(from --http); pick a free one, or --http off",
    );
  } finally {
    busy.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

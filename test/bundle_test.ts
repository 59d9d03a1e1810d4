/**
 * `deno task bundle`: the single file runs `--help`, `serve` against a real database and
 * broker (migrations carried inside the bundle), and the embedded default when PGlite's
 * files sit beside it.
 */
import assert from "node:assert/strict";
import { bundle } from "../scripts/bundle.ts";
import { openBooks, verifyEmbeddedBooks } from "./support/audit.ts";
import { createTestBroker } from "./support/broker.ts";
import { createTestDatabase } from "./support/db.ts";
import {
  connectClient,
  endClient,
  prefixedTopicArgs,
  publish,
  uniquePrefix,
  userId,
  waitFor,
} from "./support/serve.ts";

/** A child `deno run -A bundle serve ...` whose JSON log lines are collected. */
function spawnBundle(file: string, args: string[], cwd: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", file, ...args],
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const records: Record<string, unknown>[] = [];
  let stderr = "";
  const reading = (async () => {
    let rest = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      const lines = rest.split("\n");
      rest = lines.pop()!;
      for (const line of lines) if (line.startsWith("{")) records.push(JSON.parse(line));
    }
  })();
  const readingErr = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) stderr += chunk;
  })();
  return {
    records,
    stderr: () => stderr,
    logged: (msg: string) => records.find((r) => r.msg === msg),
    async stop(): Promise<number> {
      // serve listens for SIGTERM from before its start (src/cli/shutdown_signals.ts
      // runUntilStopSignal), and the caller has seen it subscribe.
      child.kill("SIGTERM");
      const { code } = await child.status;
      await reading;
      await readingErr;
      return code;
    },
  };
}

Deno.test("the bundle runs --help, and serve against a real database and broker", async () => {
  const dir = await Deno.makeTempDir({ prefix: "feedline-bundle-test-" });
  const db = await createTestDatabase();
  const broker = await createTestBroker();
  try {
    const file = `${dir}/feedline.js`;
    await bundle(file, { assets: false });

    const help = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", file, "--help"],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(help.code, 0, new TextDecoder().decode(help.stderr));
    assert.match(new TextDecoder().decode(help.stdout), /Usage: feedline <command>/);

    const user = userId();
    await db.sql`insert into users (id) values (${user})`;
    await db.sql`insert into devices (user_id, code) values (${user}, 'dev1')`;
    await db.sql`insert into feeds (user_id, key) values (${user}, 'temp')`;
    const prefix = uniquePrefix();
    const books = await openBooks(db.url);
    const serve = spawnBundle(file, [
      "serve",
      "--database-url",
      db.url,
      "--mqtt-url",
      broker.url,
      "--mqtt-protocol",
      broker.protocolVersion === 5 ? "5" : "3.1.1",
      "--client-id",
      `feedline-bundle-${prefix}`,
      "--http",
      "127.0.0.1:0",
      "--db-pool-size",
      "2",
      "--batch-interval-ms",
      "50",
      "--log-format",
      "json",
      ...prefixedTopicArgs(prefix),
    ], dir);
    let code: number | null = null;
    const pub = await connectClient(broker.url, broker.protocolVersion);
    try {
      await waitFor("the bundle subscribed", () => serve.logged("subscribed") !== undefined, 30_000)
        .catch((error) => {
          throw new Error(`${error.message}; stderr: ${serve.stderr()}`);
        });
      const status = String(serve.logged("http listening")?.status);
      await publish(pub, `${prefix}/${user}/dev1/feeds/temp`, "42.5");
      await waitFor(
        "the reading stored by the bundle",
        async () =>
          /feedline_readings_stored_total 1\n/.test(await (await fetch(`${status}metrics`)).text()),
      );
      const [{ n }] = await db.sql`select count(*)::int as n from feed_values`;
      assert.equal(n, 1);
      assert.equal((await fetch(`${status}readyz`)).status, 200);
    } finally {
      await endClient(pub);
      code = await serve.stop();
    }
    assert.equal(code, 0, serve.stderr());
    // The bundle's books against the tables (test/support/audit.ts).
    await books.verify([{ stopped: serve.logged("stopped") ?? null }]);
  } finally {
    await broker.close();
    await db.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the bundle runs the embedded default with PGlite's files beside it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "feedline-bundle-test-" });
  try {
    const file = `${dir}/feedline.js`;
    const assets = await bundle(file, { assets: true });
    assert.equal(assets.length, 3);
    const serve = spawnBundle(file, [
      "serve",
      "--data-dir",
      `${dir}/data`,
      "--embedded-mqtt-port",
      "0",
      "--embedded-db-port",
      "0",
      "--http",
      "127.0.0.1:0",
      "--log-format",
      "json",
    ], dir);
    try {
      await waitFor("the bundle subscribed", () => serve.logged("subscribed") !== undefined, 30_000)
        .catch((error) => {
          throw new Error(`${error.message}; stderr: ${serve.stderr()}`);
        });
      // The new data directory was made by the bundle run again as a child (main.ts).
      assert.match(
        String(serve.logged("database ready")?.where),
        /embedded PostgreSQL.*\(created, by a child process\)/,
      );
    } finally {
      assert.equal(await serve.stop(), 0, serve.stderr());
    }
    // Its books against its embedded database (test/support/audit.ts).
    await verifyEmbeddedBooks(`${dir}/data`, [{ stopped: serve.logged("stopped") ?? null }]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

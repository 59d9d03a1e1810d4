/**
 * The CLI as a person meets it: run `main.ts` as a process and check exit codes and the
 * one line it prints for a mistake.
 */
import assert from "node:assert/strict";
import { freePort } from "./support/broker.ts";
import { createTestDatabase } from "./support/db.ts";
import { runFeedline } from "./support/serve.ts";

const feedline = runFeedline;

function assertOneLine(stderr: string, pattern: RegExp) {
  const lines = stderr.trim().split("\n");
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(stderr, /\bat .*\.ts:\d+/, "no stack trace without --verbose");
}

Deno.test("an unknown command exits 2 and lists the commands", async () => {
  const r = await feedline(["serv"]);
  assert.equal(r.code, 2);
  assertOneLine(r.stderr, /unknown command "serv"; commands: serve, migrate/);
});

Deno.test("an unknown flag exits 2 and points at --help", async () => {
  const r = await feedline(["serve", "--batch-sise", "10"]);
  assert.equal(r.code, 2);
  assertOneLine(r.stderr, /batch-sise.*see 'feedline serve --help'/);
});

Deno.test("a bad flag value names the flag and the expected form", async () => {
  const r = await feedline(["serve", "--batch-size", "lots"]);
  assert.equal(r.code, 1);
  assertOneLine(r.stderr, /^feedline: --batch-size must be a whole number \(got "lots"\)$/);
});

Deno.test("a bad environment value names the variable", async () => {
  const r = await feedline(["serve"], { FEEDLINE_QUEUE_SIZE: "0" });
  assert.equal(r.code, 1);
  assertOneLine(r.stderr, /^feedline: FEEDLINE_QUEUE_SIZE must be at least 1 \(got "0"\)$/);
});

Deno.test("a malformed DATABASE_URL is repeated with its password masked", async () => {
  const r = await feedline(["serve"], { DATABASE_URL: "mysql://u:hunter2@x/db" });
  assert.equal(r.code, 1);
  assertOneLine(
    r.stderr,
    /^feedline: DATABASE_URL must be a URL starting with postgres:\/\/ or postgresql:\/\/ \(got "mysql:\/\/u:\*\*\*@x\/db"\)$/,
  );
  assert.doesNotMatch(r.stderr, /hunter2/);
});

Deno.test("a negative number names the bound, not 'ambiguous'", async () => {
  for (const args of [["--batch-size", "-1"], ["--batch-size=-1"]]) {
    const r = await feedline(["serve", ...args]);
    assert.equal(r.code, 1);
    assertOneLine(r.stderr, /^feedline: --batch-size must be at least 1 \(got "-1"\)$/);
  }
});

Deno.test("a bad --mqtt-url is repeated, without its password", async () => {
  let r = await feedline(["serve", "--mqtt-url", "nonsense"]);
  assert.equal(r.code, 1);
  assertOneLine(
    r.stderr,
    /^feedline: --mqtt-url must be a URL starting with mqtt:\/\/.* \(got "nonsense"\)$/,
  );
  // A password on the command line is warned about first (it shows in ps), then the error.
  r = await feedline(["serve", "--mqtt-url", "http://me:s3cret@broker"]);
  const [warning, error, ...more] = r.stderr.trim().split("\n");
  assert.match(warning, /^feedline: warning: .*--mqtt-url/);
  assert.match(error, /\(got "http:\/\/me:\*\*\*@broker"\)$/);
  assert.deepEqual(more, []);
  assert.doesNotMatch(r.stderr, /s3cret/);
});

Deno.test("a bad topic template names the flag", async () => {
  const r = await feedline(["serve", "--feed-topic", "{user_id}/{device_code}/feeds"]);
  assert.equal(r.code, 1);
  assertOneLine(r.stderr, /--feed-topic: .* needs a \{feed_key\} level/);
});

Deno.test("an unreachable database says what to check and exits 1", async () => {
  const port = await freePort();
  const r = await feedline(["serve", "--http", "off"], {
    DATABASE_URL: `postgres://feedline:s3cret@127.0.0.1:${port}/x`,
    MQTT_URL: "mqtt://127.0.0.1:1",
  });
  assert.equal(r.code, 1);
  assertOneLine(
    r.stderr,
    /cannot connect to PostgreSQL at postgres:\/\/feedline:\*\*\*@127\.0\.0\.1:\d+\/x: .*check DATABASE_URL/,
  );
  assert.doesNotMatch(r.stderr, /s3cret/);
});

Deno.test("an unreachable broker says what to check and exits 1", async () => {
  const port = await freePort();
  const env: Record<string, string> = { MQTT_URL: `mqtt://127.0.0.1:${port}` };
  // A database with the schema (--no-migrate refuses one without); else the embedded one.
  const db = Deno.env.get("TEST_DATABASE_URL") ? await createTestDatabase() : null;
  if (db) env.DATABASE_URL = db.url;
  const dataDir = await Deno.makeTempDir({ prefix: "feedline-cli-" });
  try {
    const r = await feedline([
      "serve",
      "--http",
      "off",
      "--data-dir",
      dataDir,
      "--embedded-db-port",
      "0",
      "--no-migrate",
      "--log-level",
      "error",
    ], env);
    assert.equal(r.code, 1);
    assertOneLine(
      r.stderr,
      /cannot connect to MQTT broker mqtt:\/\/127\.0\.0\.1:\d+.*check MQTT_URL/,
    );
  } finally {
    await db?.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("--help prints every serve flag with its variable", async () => {
  const r = await feedline(["serve", "--help"]);
  assert.equal(r.code, 0);
  for (
    const text of [
      "--mqtt-url",
      "[MQTT_URL]",
      "--database-url",
      "[DATABASE_URL]",
      "--batch-interval-ms",
      "--qos",
    ]
  ) {
    assert.ok(r.stdout.includes(text), `help lacks ${text}`);
  }
});

Deno.test("--version and 'version' print deno.json's version", async () => {
  const { version } = JSON.parse(
    await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
  );
  for (const args of [["--version"], ["version"], ["-V"], ["serve", "--version"]]) {
    const r = await feedline(args);
    assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    assert.equal(r.stdout, `feedline ${version}\n`, args.join(" "));
  }
});

Deno.test("feedline with no command prints the usage on stderr and exits 2", async () => {
  const r = await feedline([]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^Usage: feedline <command>/m);
  assert.equal(r.stdout, "");
  assert.equal((await feedline(["--help"])).code, 0, "asking for help is not a mistake");
});

Deno.test("a database error names what gave the URL: --database-url or DATABASE_URL", async () => {
  const args = ["simulate", "--register", "--mqtt-url", "mqtt://127.0.0.1:1", "--count", "1"];
  const url = `postgres://nobody@127.0.0.1:${await freePort()}/x`;
  const byFlag = await feedline([...args, "--database-url", url], { DATABASE_URL: "" });
  assert.equal(byFlag.code, 1);
  assert.match(byFlag.stderr, /check --database-url and that the server is running/);
  const byEnv = await feedline(args, { DATABASE_URL: url });
  assert.match(byEnv.stderr, /check DATABASE_URL and that the server is running/);
});

/**
 * An empty or host-less database URL is refused by every command that takes one, with one
 * line naming the flag or variable that gave it; PGHOST says the user means libpq's
 * defaults. An empty environment variable means unset (the embedded database).
 */
import assert from "node:assert/strict";
import { parseMigrateArgs } from "../commands/migrate.ts";
import { parseReplayArgs } from "../src/cli/replay_options.ts";
import { parseServeArgs } from "../src/cli/serve_options.ts";
import { parseSimulateArgs } from "../src/cli/simulate_options.ts";
import { FeedlineError } from "../src/errors.ts";

type Env = Record<string, string>;

/** Each command's parser, with the arguments it needs besides the database URL. */
const COMMANDS: Record<string, (args: string[], env: Env) => { databaseUrl?: string }> = {
  serve: (args, env) => parseServeArgs(args, env),
  replay: (args, env) => parseReplayArgs(["capture.jsonl", ...args], env),
  migrate: (args, env) => parseMigrateArgs(args, env),
  simulate: (args, env) => parseSimulateArgs(["--register", ...args], env),
};

function refusal(parse: () => unknown): string {
  try {
    parse();
  } catch (error) {
    assert.ok(error instanceof FeedlineError, String(error));
    assert.equal(error.code, "CONFIG_INVALID");
    assert.doesNotMatch(error.message, /\n/);
    return error.message;
  }
  assert.fail("the URL was accepted");
}

const HOSTLESS = ["postgres://", "postgres:///", "postgresql://", "postgres:///feedline"];

for (const [command, parse] of Object.entries(COMMANDS)) {
  Deno.test(`${command}: a database URL without a host is refused, naming the option`, () => {
    for (const url of HOSTLESS) {
      assert.match(
        refusal(() => parse(["--database-url", url], {})),
        new RegExp(`^--database-url names no server \\(got "${url}"\\).*set PGHOST`),
      );
      assert.match(
        refusal(() => parse([], { DATABASE_URL: url })),
        /^DATABASE_URL names no server .*pick the local one/,
      );
    }
    assert.match(
      refusal(() => parse(["--database-url", ""], {})),
      /^--database-url is empty; give the server's URL/,
    );
  });

  Deno.test(`${command}: PGHOST makes a host-less URL mean libpq's defaults`, () => {
    for (const url of HOSTLESS) {
      assert.equal(parse([], { DATABASE_URL: url, PGHOST: "db.example" }).databaseUrl, url);
    }
    // PGHOSTADDR alone is not read by the driver: still refused, and the line says so.
    assert.match(
      refusal(() => parse([], { DATABASE_URL: "postgres://", PGHOSTADDR: "10.0.0.1" })),
      /PGHOSTADDR is not read/,
    );
  });

  Deno.test(`${command}: an empty DATABASE_URL means unset; a URL with a host is taken`, () => {
    assert.equal(parse([], { DATABASE_URL: "" }).databaseUrl, undefined);
    const url = "postgres://feedline@db.example:5432/iot";
    assert.equal(parse([], { DATABASE_URL: url }).databaseUrl, url);
  });
}

Deno.test("serve: --listen-database-url without a host is refused too", () => {
  assert.match(
    refusal(() => parseServeArgs(["--listen-database-url", "postgres://"], {})),
    /^--listen-database-url names no server/,
  );
});

Deno.test("a refused URL's password is masked in the line", () => {
  assert.doesNotMatch(
    refusal(() => parseServeArgs([], { DATABASE_URL: "postgres://:hunter2@" })),
    /hunter2/,
  );
});

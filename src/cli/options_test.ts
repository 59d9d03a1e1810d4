import { verboseFrom } from "./option_groups.ts";
import assert from "node:assert/strict";
import { z } from "zod";
import { maskUrlSecrets, option, resolveOptions, zs } from "./options.ts";

const specs = {
  batchSize: option({
    flag: "batch-size",
    env: "FEEDLINE_BATCH_SIZE",
    schema: zs.int(1, 100).default(10),
    defaultText: "10",
    doc: "",
  }),
  offset: option({ flag: "offset", schema: zs.int(-5, 5).default(0), defaultText: "0", doc: "" }),
  mqttUrl: option({
    flag: "mqtt-url",
    env: "MQTT_URL",
    schema: zs.url(["mqtt:"]).optional(),
    defaultText: "none",
    doc: "",
    secret: "url",
  }),
  password: option({
    flag: "password",
    env: "PASSWORD",
    schema: z.string().min(8, "8 characters or more").optional(),
    defaultText: "none",
    doc: "",
    secret: true,
  }),
  verbose: option({
    flag: "verbose",
    schema: zs.bool().default(false),
    defaultText: "off",
    doc: "",
    boolean: true,
  }),
};

function resolve(args: string[], env: Record<string, string> = {}) {
  return resolveOptions(specs, args, env, "test");
}

function errorOf(args: string[], env: Record<string, string> = {}): string {
  try {
    resolve(args, env);
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error(`no error for ${args.join(" ")}`);
}

Deno.test("resolveOptions: flag, then environment, then default; sources say which", () => {
  assert.equal(resolve([]).values.batchSize, 10);
  assert.equal(resolve([]).sources.batchSize, "default");
  const fromEnv = resolve([], { FEEDLINE_BATCH_SIZE: "20" });
  assert.equal(fromEnv.values.batchSize, 20);
  assert.equal(fromEnv.sources.batchSize, "env");
  const fromFlag = resolve(["--batch-size", "30"], { FEEDLINE_BATCH_SIZE: "20" });
  assert.equal(fromFlag.values.batchSize, 30);
  assert.equal(fromFlag.sources.batchSize, "flag");
  // An empty variable counts as unset.
  assert.equal(resolve([], { FEEDLINE_BATCH_SIZE: "" }).values.batchSize, 10);
});

Deno.test("resolveOptions: a negative number is a value, checked against the bound", () => {
  assert.equal(errorOf(["--batch-size", "-1"]), '--batch-size must be at least 1 (got "-1")');
  assert.equal(errorOf(["--batch-size=-1"]), '--batch-size must be at least 1 (got "-1")');
  assert.equal(errorOf(["--batch-size", "101"]), '--batch-size must be at most 100 (got "101")');
  assert.equal(errorOf(["--batch-size", "1.5"]), '--batch-size must be a whole number (got "1.5")');
  assert.equal(
    errorOf([], { FEEDLINE_BATCH_SIZE: "-3" }),
    'FEEDLINE_BATCH_SIZE must be at least 1 (got "-3")',
  );
  assert.equal(resolve(["--offset", "-5"]).values.offset, -5);
  // After --, a negative number stays a positional.
  assert.deepEqual(resolve(["--", "--offset", "-1"]).positionals, ["--offset", "-1"]);
});

Deno.test("resolveOptions: a bad URL is repeated with its password masked", () => {
  assert.equal(
    errorOf(["--mqtt-url", "nonsense"]),
    '--mqtt-url must be a URL starting with mqtt:// (got "nonsense")',
  );
  const bad = errorOf(["--mqtt-url", "http://user:hunter2@broker:1883/?token=abc"]);
  assert.equal(
    bad,
    '--mqtt-url must be a URL starting with mqtt:// (got "http://user:***@broker:1883/?token=***")',
  );
  const malformed = errorOf([], { MQTT_URL: "mqtt//user:p@ss:w0rd@broker" });
  assert.doesNotMatch(malformed, /p@ss|w0rd/);
  assert.match(malformed, /^MQTT_URL must be .*\(got "mqtt\/\/user:\*\*\*@broker"\)$/);
});

Deno.test("resolveOptions: a bad secret that is not a URL is never repeated", () => {
  const message = errorOf(["--password", "hunter2"]);
  assert.equal(message, "--password must be 8 characters or more");
  assert.doesNotMatch(message, /hunter2/);
});

Deno.test("resolveOptions: an unknown flag is a usage error pointing at --help", () => {
  assert.match(errorOf(["--batch-sise", "3"]), /batch-sise.*see 'feedline test --help'$/);
});

Deno.test("maskUrlSecrets keeps what is not secret", () => {
  assert.equal(maskUrlSecrets("mqtt://broker:1883"), "mqtt://broker:1883");
  assert.equal(maskUrlSecrets("mqtt://user@broker"), "mqtt://user@broker");
  assert.equal(
    maskUrlSecrets("postgres://u:pw@db/x?sslmode=require"),
    "postgres://u:***@db/x?sslmode=require",
  );
});

Deno.test("verboseFrom() reads --verbose or FEEDLINE_VERBOSE with the option's own rule", () => {
  assert.equal(verboseFrom(["serve", "--verbose"], {}), true);
  assert.equal(verboseFrom(["serve"], { FEEDLINE_VERBOSE: "on" }), true);
  assert.equal(verboseFrom(["serve"], { FEEDLINE_VERBOSE: "0" }), false);
  assert.equal(verboseFrom(["serve"], { FEEDLINE_VERBOSE: "maybe" }), false);
  assert.equal(verboseFrom(["serve"], {}), false);
});

Deno.test("serve's default client id is stable per data dir and differs between two on one host", async () => {
  const { defaultClientId } = await import("./serve_options.ts");
  const a = defaultClientId(".feedline", "/srv/one");
  assert.equal(a, defaultClientId("/srv/one/.feedline", "/elsewhere"));
  assert.equal(a, defaultClientId("./.feedline/", "/srv/one/"));
  assert.notEqual(a, defaultClientId(".feedline", "/srv/two"));
  assert.match(a, /^feedline-[A-Za-z0-9_.-]+-[0-9a-f]{8}$/);
});

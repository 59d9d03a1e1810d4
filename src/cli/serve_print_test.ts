import assert from "node:assert/strict";
import { formatServeConfig } from "./serve_print.ts";
import { parseServeArgs } from "./serve_options.ts";

/** Ports a previous start of the data dir moved to (src/embedded/remembered_ports.ts). */
const REMEMBERED = { mqtt: 43557, http: 38080 };
const NONE = { mqtt: null, http: null };

/** `serve --print-config`'s line for `flag`: [value, source]. */
function line(text: string, flag: string): [string, string] {
  const row = text.split("\n").find((l) => l.startsWith(`${flag} `));
  assert.ok(row, `no ${flag} line in:\n${text}`);
  const m = /^\S+\s+(.*?)\s{2,}(\S+)$/.exec(row);
  assert.ok(m, row);
  return [m[1], m[2]];
}

Deno.test("--print-config shows the values the defaults resolve to, not their rules", () => {
  const args = ["--data-dir", "/srv/f/.feedline", "--print-config"];
  const embedded = parseServeArgs(args, {});
  const text = formatServeConfig(args, {}, embedded, REMEMBERED);
  assert.doesNotMatch(text, /<hostname>|\(on with the embedded|\(1000 on MQTT 5|5 \(3\.1\.1 for/);
  assert.equal(
    line(text, "client-id")[0],
    `${embedded.clientId} (from the host name, the data dir)`,
  );
  assert.match(embedded.clientId, /^feedline-[A-Za-z0-9_.-]+-[0-9a-f]{8}$/);
  assert.match(line(text, "mqtt-protocol")[0], /^3\.1\.1 /);
  assert.match(line(text, "auto-register")[0], /^true /);
  assert.match(line(text, "ack-window")[0], /^20 \(at connect: /);
  assert.match(line(text, "mqtt-url")[0], /127\.0\.0\.1:1883 .*if 1883 is taken: 43557/);
  assert.match(line(text, "http")[0], /^127\.0\.0\.1:8080 \(at start, if it is taken: port 38080/);

  const env = { DATABASE_URL: "postgres://u:pw@db.example/iot", MQTT_URL: "mqtt://broker:1883" };
  const real = parseServeArgs(args, env);
  const text2 = formatServeConfig(args, env, real, NONE);
  const [id, from] = line(text2, "client-id");
  assert.ok(id.startsWith(`${real.clientId} (from the host name, the data dir and the database`));
  assert.equal(from, "default");
  assert.equal(line(text2, "mqtt-protocol")[0], "5");
  assert.match(line(text2, "auto-register")[0], /^false /);
  assert.match(line(text2, "ack-window")[0], /^1000 \(at connect: sent as Receive Maximum/);
  assert.equal(line(text2, "http")[0], "127.0.0.1:8080", "a real deployment's address stays put");
  assert.doesNotMatch(text2, /pw@/);
  // What the user set is shown as set.
  const given = formatServeConfig([...args, "--ack-window", "50"], env, real, NONE);
  assert.deepEqual(line(given, "ack-window"), ["50", "--ack-window"]);
});

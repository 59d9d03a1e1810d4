/**
 * `deno task bench`'s flags: the comma lists of --broker-inflight and --phases, and the
 * fleet phase's sizes. Pure parsing; the benchmark itself is never run by tests.
 */
import assert from "node:assert/strict";
import { parseBenchArgs } from "./main.ts";
import { FeedlineError } from "../src/errors.ts";

const parse = (...args: string[]) => parseBenchArgs(args, {});

function assertRejected(args: string[], message: RegExp): void {
  assert.throws(
    () => parse(...args),
    (e: unknown) => e instanceof FeedlineError && message.test(e.message),
  );
}

Deno.test("--broker-inflight defaults to both settings: Mosquitto's 20, then no cap", () => {
  assert.deepEqual(parse().brokerInflight, [20, 0]);
});

Deno.test("--broker-inflight takes one setting or a comma list, in the order given", () => {
  assert.deepEqual(parse("--broker-inflight", "0").brokerInflight, [0]);
  assert.deepEqual(parse("--broker-inflight", "0, 100,65535").brokerInflight, [0, 100, 65535]);
});

Deno.test("--broker-inflight rejects values outside 0..65535, non-numbers and repeats", () => {
  assertRejected(["--broker-inflight", "70000"], /--broker-inflight must be at most 65535/);
  assertRejected(["--broker-inflight", "20,-1"], /at least 0/);
  assertRejected(["--broker-inflight", "20,x"], /a whole number/);
  assertRejected(["--broker-inflight", "20,"], /a whole number/);
  assertRejected(["--broker-inflight", "20,20"], /each setting once/);
});

Deno.test("--phases accepts fleet, which is not in the default", () => {
  assert.ok(!parse().phaseList.includes("fleet"));
  assert.deepEqual(parse("--phases", "serve,fleet").phaseList, ["serve", "fleet"]);
  assertRejected(["--phases", "serve,fleets"], /--phases must be a comma list of .*fleet/);
});

Deno.test("the fleet phase's fleet is 2,000 × 50 × 10 = 1,000,000 feeds by default", () => {
  const cfg = parse();
  assert.equal(cfg.fleetUsers * cfg.fleetDevices * cfg.fleetFeeds, 1_000_000);
  const small = parse("--fleet-users", "200", "--fleet-devices", "10", "--fleet-feeds", "10");
  assert.deepEqual([small.fleetUsers, small.fleetDevices, small.fleetFeeds], [200, 10, 10]);
});

Deno.test("--serve-args is split on spaces for serve and for the targets' batch interval", () => {
  assert.deepEqual(parse().serveArgList, []);
  assert.deepEqual(parse("--serve-args", " --batch-interval-ms  500 ").serveArgList, [
    "--batch-interval-ms",
    "500",
  ]);
});

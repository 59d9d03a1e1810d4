/**
 * The benchmark's targets table (bench/summary.ts): which of issue 15's targets a run
 * measured, and the verdict from its rows. Pure; no benchmark is run.
 */
import assert from "node:assert/strict";
import type { SummaryRow } from "./rows.ts";
import { batchIntervalMs, evaluateTargets } from "./summary.ts";
import { cpuTargetLines, shareTargetLines } from "./cpu_target.ts";

function serveRow(inflight: number, over: Partial<SummaryRow> = {}): SummaryRow {
  return {
    name: `feedline serve (inflight ${inflight})`,
    phase: "serve",
    inflight,
    messages: 1000,
    seconds: 1,
    perSecond: 1000,
    ratioToBroker: 0.8,
    p50Ms: 100,
    p99Ms: 900,
    lost: 0,
    dropped: 0,
    peakRssMb: 200,
    extra: { published: 1000, publishSeconds: 0.5 },
    ...over,
  };
}

const resultOf = (lines: ReturnType<typeof evaluateTargets>, target: RegExp) =>
  lines.filter((l) => target.test(l.target)).map((l) => [l.inflight, l.result]);

Deno.test("QoS 1 flat out: one verdict per setting, from the same setting's ratio", () => {
  const lines = evaluateTargets({
    qos: 1,
    rate: "0",
    serveArgs: [],
    rows: [serveRow(20, { ratioToBroker: 0.6 }), serveRow(0), serveRow(5, { peakRssMb: 300 })],
  });
  assert.deepEqual(resultOf(lines, /^QoS 1/), [[20, "not met"], [0, "met"], [5, "not met"]]);
  assert.deepEqual(resultOf(lines, /^QoS 0/), [[null, "not measured in this run"]]);
  assert.deepEqual(resultOf(lines, /^latency/), [[null, "not measured in this run"]]);
});

Deno.test("QoS 0 at a rate: reports the rate the publisher reached; loss fails it", () => {
  const lines = evaluateTargets({
    qos: 0,
    rate: "50000",
    serveArgs: [],
    rows: [serveRow(20), serveRow(0, { lost: 3 })],
  });
  assert.deepEqual(resultOf(lines, /^QoS 0/), [[20, "met"], [0, "not met"]]);
  assert.match(lines.find((l) => /^QoS 0/.test(l.target))!.measured, /offered 2,000\/s \(short/);
  assert.deepEqual(resultOf(lines, /^QoS 1/), [[null, "not measured in this run"]]);
});

Deno.test("latency at 50%: 1 s at QoS 1, the batch interval + 1 s at QoS 0", () => {
  const rows = [serveRow(0, { p99Ms: 1500 })];
  const qos1 = evaluateTargets({ qos: 1, rate: "50%", serveArgs: [], rows });
  assert.deepEqual(resultOf(qos1, /^latency/), [[0, "not met"]]);
  const qos0 = evaluateTargets({ qos: 0, rate: "50%", serveArgs: [], rows });
  assert.deepEqual(resultOf(qos0, /^latency/), [[0, "met"]]);
  const short = ["--batch-interval-ms", "200"];
  assert.deepEqual(
    resultOf(evaluateTargets({ qos: 0, rate: "50%", serveArgs: short, rows }), /^latency/),
    [[0, "not met"]],
  );
});

Deno.test("the fleet target needs a 1M-feed fleet and the serve phase of the same setting", () => {
  const fleet = (inflight: number, ratioToServe: number | null, feeds = 1_000_000) => ({
    ...serveRow(inflight),
    phase: "fleet",
    extra: { feeds, ratioToServe },
  });
  const lines = evaluateTargets({
    qos: 1,
    rate: "0",
    serveArgs: [],
    rows: [fleet(20, 0.85), fleet(0, 0.5), fleet(7, null), fleet(8, 0.9, 20_000)],
  });
  assert.deepEqual(resultOf(lines, /^1M-feed/), [
    [20, "met"],
    [0, "not met"],
    [7, "not measured in this run"],
    [8, "not measured in this run"],
  ]);
});

Deno.test("batchIntervalMs reads --batch-interval-ms in either form, else serve's 10 s", () => {
  assert.equal(batchIntervalMs([]), 10_000);
  assert.equal(batchIntervalMs(["--ack-window", "5", "--batch-interval-ms", "250"]), 250);
  assert.equal(batchIntervalMs(["--batch-interval-ms=750"]), 750);
});

Deno.test("serve CPU (issue 26): a verdict per serve row of a QoS 1 flat-out run, the counting subscriber beside it", () => {
  const broker: SummaryRow = {
    ...serveRow(0),
    name: "broker limit (inflight 0)",
    phase: "broker",
    cpuUsPerMessage: 11.3,
  };
  const rows = [
    broker,
    serveRow(0, { cpuUsPerMessage: 10.6 }),
    serveRow(20, { cpuUsPerMessage: 12.4 }),
  ];
  assert.deepEqual(cpuTargetLines(rows, 1, true).map((l) => [l.measured, l.result]), [
    ["feedline serve (inflight 0): 10.6 µs/msg (the counting subscriber: 11.3)", "met"],
    ["feedline serve (inflight 20): 12.4 µs/msg", "not met"],
  ]);
  assert.deepEqual(cpuTargetLines(rows, 0, true), [], "QoS 0: not this target");
  assert.deepEqual(cpuTargetLines(rows, 1, false), [], "at a rate: not flat out");
});

Deno.test("the share of the broker limit: QoS 1 flat out, no in-flight cap, 0 lost", () => {
  const rows = [
    serveRow(0, { ratioToBroker: 0.97 }),
    serveRow(0, { ratioToBroker: 1.1, lost: 3 }),
    serveRow(0, { ratioToBroker: 0.9 }),
    serveRow(20, { ratioToBroker: 0.5 }),
  ];
  assert.deepEqual(shareTargetLines(rows, 1, true).map((l) => [l.measured, l.result]), [
    ["feedline serve (inflight 0): 97.0 %, 0 lost", "met"],
    ["feedline serve (inflight 0): 110.0 %, 3 lost", "not met"],
    ["feedline serve (inflight 0): 90.0 %, 0 lost", "not met"],
  ]);
  assert.deepEqual(shareTargetLines(rows, 0, true), [], "QoS 0: not this target");
  assert.deepEqual(shareTargetLines(rows, 1, false), [], "at a rate: not flat out");
});

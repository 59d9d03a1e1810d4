import assert from "node:assert/strict";
import { parseTraceTime } from "../cli/trace_options.ts";
import { deviceStats, formatTraceTotals, report, type TraceLine } from "./trace_report.ts";

function line(over: Partial<TraceLine>): TraceLine {
  return {
    receivedAtUs: 1,
    topic: "u/dev1/feeds/temp",
    outcome: "stored",
    detail: "",
    reasons: [],
    reprocessed: false,
    device: "dev1",
    ...over,
  };
}

Deno.test("trace totals add up to the messages, and each device's counts to its messages", () => {
  const r = report("capture", [
    line({ receivedAtUs: 10 }),
    line({ receivedAtUs: 20, outcome: "rejected", reasons: ["unknown_feed"], detail: "x" }),
    line({ receivedAtUs: 30, outcome: "duplicate" }),
    line({ receivedAtUs: 40, outcome: "rejected", reasons: ["bad_payload"], device: null }),
  ], []);
  assert.equal(
    formatTraceTotals(r.totals),
    "received 4 = stored 1 + rejected 2 + skipped 0 + duplicate 1 + dropped 0 + unknown 0",
  );
  const [unknown, dev1] = deviceStats(r.lines);
  assert.deepEqual(
    [dev1.device, dev1.received, dev1.stored, dev1.duplicate, dev1.rejected, dev1.lastSeenUs],
    ["dev1", 3, 1, 1, { unknown_feed: 1 }, 30],
  );
  assert.deepEqual(dev1.lastReject, { atUs: 20, reason: "unknown_feed", detail: "x" });
  assert.deepEqual([unknown.device, unknown.received, unknown.rejected], ["?", 1, {
    bad_payload: 1,
  }]);
});

Deno.test("trace times: ages before now, ISO 8601, epoch; anything else is refused", () => {
  const now = 1_767_225_600_000_000;
  assert.equal(parseTraceTime("10m", now), now - 600_000_000);
  assert.equal(parseTraceTime("2h", now), now - 7_200_000_000);
  assert.equal(parseTraceTime("2026-01-01T00:00:00Z", now), 1_767_225_600_000_000);
  assert.equal(parseTraceTime("ten minutes", now), null);
});

import assert from "node:assert/strict";
import { parseReplayArgs } from "./replay_options.ts";
import { parseKeep, parseRetentionTiers, parseRollupWidths } from "./rollup_options.ts";
import { parseServeArgs, upkeepOf } from "./serve_options.ts";

Deno.test("--rollups: widths in PostgreSQL's words, distinct and shortest first; off by default", () => {
  const widths = parseRollupWidths("1d, 1m,60s,1h,2w");
  assert.ok(typeof widths !== "string");
  assert.deepEqual(widths.map((w) => [w.label, w.interval]), [
    ["60s", "60 seconds"],
    ["1h", "1 hours"],
    ["1d", "1 days"],
    ["2w", "14 days"],
  ]);
  assert.equal(parseServeArgs([], {}).rollups, null);
  assert.deepEqual(
    parseServeArgs([], { FEEDLINE_ROLLUPS: "1m,1h" }).rollups?.map((w) => w.label),
    ["1m", "1h"],
  );
  assert.deepEqual(parseReplayArgs(["--rollups", "1h", "x.jsonl"], {}).rollups?.length, 1);
  assert.throws(() => parseServeArgs(["--rollups", "1m,0h"], {}), /--rollups.*"0h" is not a width/);
  assert.throws(() => parseServeArgs(["--rollups", ""], {}), /--rollups/);
});

Deno.test("--rollups: each coarse width is a multiple of a finer one (it is folded from it)", () => {
  assert.throws(
    () => parseServeArgs(["--rollups", "45s,1m"], {}),
    /--rollups.*1m is not a multiple of a finer width \(45s\)/,
  );
  assert.match(String(parseRollupWidths("10m,15m,1h")), /15m is not a multiple.*\(10m\)/);
  assert.ok(Array.isArray(parseRollupWidths("1m,5m,1h,1d,1w")));
});

Deno.test("--retention: the plain age as before, or tiers for raw and each rollup width", () => {
  assert.equal(parseKeep("2y"), 2 * 365 * 86_400_000);
  assert.equal(parseKeep("forever"), null);
  assert.ok(Number.isNaN(parseKeep("2 months")));
  assert.equal(
    upkeepOf(parseServeArgs(["--retention", "90d"], {})).partitions.retentionMs,
    90 * 86_400_000,
  );
  const p = upkeepOf(parseServeArgs(["--retention", "raw=30d,1h=2y,1d=forever"], {})).partitions;
  assert.equal(p.retentionMs, 30 * 86_400_000);
  assert.deepEqual(p.rollupRetention, [
    { interval: "1 hours", widthMs: 3_600_000, keepMs: 2 * 365 * 86_400_000 },
    { interval: "1 days", widthMs: 86_400_000, keepMs: null },
  ]);
  assert.deepEqual(parseRetentionTiers("1h=2y"), {
    rawMs: null,
    rollups: [{
      width: { label: "1h", interval: "1 hours", ms: 3_600_000 },
      keepMs: 63_072_000_000,
    }],
  }, "raw not named: kept");
  assert.throws(() => parseServeArgs(["--retention", "raw=30"], {}), /--retention/);
});

import assert from "node:assert/strict";
import type { DecodedMessage, Inbound } from "../core/message.ts";
import { createLogger } from "../log.ts";
import { logBackfill, readingTimesMs } from "./backfill.ts";

function message(receivedAtUs: number, decoded: DecodedMessage["decoded"]): DecodedMessage {
  const inbound: Inbound = {
    topic: "u/d/feeds/f",
    payload: new Uint8Array(),
    qos: 1,
    retain: false,
    receivedAtUs,
  };
  return { inbound, decoded };
}

Deno.test("readingTimesMs: a reading's ts, else its receive time; statuses and rejects store none", () => {
  const owner = { userId: "u", deviceCode: "d" };
  const times = readingTimesMs([
    message(5_000_000, {
      kind: "readings",
      ...owner,
      rejects: [],
      readings: [
        { feedKey: "a", value: 1, text: null, tsUs: 1_000_000 },
        { feedKey: "b", value: 2, text: null, tsUs: null },
      ],
    }),
    message(6_000_000, { kind: "status", ...owner, status: "online", details: null, tsUs: null }),
    message(7_000_000, { kind: "reject", reason: "bad_topic", detail: "x" }),
  ]);
  assert.deepEqual(times, [1000, 5000]);
});

Deno.test("serve's backfill report warns of failures once a minute, counting those in between", () => {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) });
  let now = 0;
  const report = logBackfill(log, () => now);
  report.onError!(new Error("down"));
  now = 30_000;
  report.onError!(new Error("down"));
  report.onError!(new Error("down"));
  now = 61_000;
  report.onError!(new Error("up again?"));
  assert.deepEqual(lines.map((l) => [l.error, l.more_failures]), [
    ["down", undefined],
    ["up again?", 2],
  ]);
});

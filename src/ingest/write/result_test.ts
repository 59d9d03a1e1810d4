/**
 * The pure parts around the writers: the dead letter's one row per message and reason,
 * and a batch's result, in particular its one outcome per message.
 */
import assert from "node:assert/strict";
import type { DecodedMessage } from "../../core/message.ts";
import { MAX_REJECT_DETAIL_CHARS, mergeRejects } from "./rejects.ts";
import { mergeResults, resultOf } from "./result.ts";
import type { Plan } from "./plan.ts";
import type { RejectRow, StatusEvent, ValueRow } from "./rows.ts";
import type { StatusesWritten } from "./statuses.ts";
import type { ValuesWritten } from "./values.ts";

const U = "7d9f4a7e-1c2b-4e3f-8a9b-0c1d2e3f4a5b";

function message(i: number, kind: "readings" | "reject" = "readings"): DecodedMessage {
  return {
    inbound: { topic: `t${i}`, payload: new Uint8Array(), qos: 1, retain: false, receivedAtUs: i },
    decoded: kind === "reject"
      ? { kind: "reject", reason: "bad_topic", detail: "?" }
      : { kind: "readings", userId: U, deviceCode: "d", readings: [], rejects: [] },
  };
}

function row(message: number): ValueRow {
  return {
    feedId: 1,
    feedKey: "k",
    value: 1,
    text: null,
    createdUs: message,
    receivedUs: 0,
    message,
    watched: false,
  };
}

Deno.test("mergeRejects() keeps one row per message and reason, details joined and bounded", () => {
  const long = "x".repeat(MAX_REJECT_DETAIL_CHARS);
  const rows: RejectRow[] = [
    { message: 1, reason: "unknown_feed", detail: "a" },
    { message: 0, reason: "bad_topic", detail: "t" },
    { message: 1, reason: "out_of_range", detail: "r" },
    { message: 1, reason: "unknown_feed", detail: "b" },
    { message: 2, reason: "unknown_feed", detail: long },
    { message: 2, reason: "unknown_feed", detail: "more" },
  ];
  const merged = mergeRejects(rows);
  assert.deepEqual(merged.map((r) => [r.message, r.reason, r.detail.length]), [
    [1, "unknown_feed", 4],
    [1, "out_of_range", 1],
    [0, "bad_topic", 1],
    [2, "unknown_feed", MAX_REJECT_DETAIL_CHARS],
  ]);
  assert.equal(merged[0].detail, "a; b");
  assert.equal(rows[0].detail, "a", "the plan's rows are left as they were");
});

Deno.test("a message is stored if any of its rows is, else rejected if it has a reject, else skipped", () => {
  const batch = [0, 1, 2, 3, 4].map((i) => message(i, i === 3 ? "reject" : "readings"));
  const values = [row(0), row(1), row(1), row(2)];
  const event: StatusEvent = { deviceId: 1, status: "online", payload: null, atUs: 0, message: 4 };
  const plan: Plan = {
    values,
    statuses: [event],
    retained: new Map(),
    rejects: [],
    skipped: { inactive_feed: 1 },
  };
  const rejects: RejectRow[] = [
    { message: 1, reason: "value_conflict", detail: "c" },
    { message: 2, reason: "db_rejected", detail: "p" },
    { message: 3, reason: "bad_topic", detail: "?" },
  ];
  const written: ValuesWritten = {
    stored: 1,
    duplicates: 1,
    conflicts: [{ feedId: 1, createdAtUs: 1, stored: "1", dropped: "2" }],
    // Message 1 has one row in conflict and one stored; message 2's only row was refused.
    notStored: new Set([values[1], values[3]]),
    rejects: [],
    refused: 1,
  };
  const statuses: StatusesWritten = { recorded: 0, refused: new Set([event]), rejects: [] };
  const result = resultOf(batch, { plan, values: written, statuses, rejects });
  assert.deepEqual(result.outcomes, { stored: 2, rejected: 2, skipped: 1 });
  assert.deepEqual(result.skipped, { inactive_feed: 1, duplicate: 1 });
  assert.deepEqual(result.rejected, { value_conflict: 1, db_rejected: 1, bad_topic: 1 });
  assert.equal(result.conflicts, 1);
  assert.deepEqual(result.rejects.map((r) => [r.topic, r.userId]), [
    ["t1", U],
    ["t2", U],
    ["t3", null],
  ]);
  assert.deepEqual(plan.skipped, { inactive_feed: 1 }, "the plan's counts are left as they were");

  const twice = mergeResults(result, result);
  assert.deepEqual(twice.outcomes, { stored: 4, rejected: 4, skipped: 2 });
  assert.deepEqual(twice.rejected, { value_conflict: 2, db_rejected: 2, bad_topic: 2 });
});

/**
 * The books audit (test/support/audit.ts) can fail: rows deleted behind serve's back, or a
 * count doctored, make it throw; a SIGKILLed serve weakens it to an inequality that still
 * catches missing rows.
 */
import assert from "node:assert/strict";
import { type AuditedServe, AuditError, compareBooks, type Gained } from "./support/audit.ts";
import { startServeFixture } from "./support/fixture.ts";
import { publish, waitFor } from "./support/serve.ts";

/** A final line of a serve that stored `readings` readings and rejected one message. */
function stoppedLine(readings: number): Record<string, unknown> {
  return {
    msg: "stopped",
    received: readings + 1,
    stored: readings,
    rejected: 1,
    skipped: 0,
    dropped: 0,
    discarded: 0,
    queued: 0,
    inFlight: 0,
    unwritten: 0,
    readingsStored: readings,
    statusEventsRecorded: 0,
    rejectsByReason: { bad_payload: 1 },
  };
}

const gained = (readings: number): Gained => ({
  readings,
  statusEvents: 0,
  rejectsByReason: { bad_payload: 1 },
  rejectedMessages: 1,
});

Deno.test("compareBooks: matching books pass; a missing row, an extra row, an unbalanced line fail", () => {
  const serve: AuditedServe = { stopped: stoppedLine(3) };
  assert.deepEqual(compareBooks([serve], gained(3)), []);
  assert.match(
    compareBooks([serve], gained(2)).join(),
    /feed_values.*counted 3, the table gained 2/,
  );
  assert.match(compareBooks([serve], gained(4)).join(), /counted 3, the table gained 4/);
  assert.match(
    compareBooks([serve], { ...gained(3), rejectsByReason: {}, rejectedMessages: 0 }).join("\n"),
    /ingest_rejects\{reason="bad_payload"\}.*counted 1, the table gained 0/,
  );
  const unbalanced = { stopped: { ...stoppedLine(3), received: 5 } };
  assert.match(compareBooks([unbalanced], gained(3)).join(), /does not balance/);
  assert.match(compareBooks([{ stopped: null }], gained(0)).join(), /no final "stopped" line/);
  // Summed over instances.
  assert.deepEqual(
    compareBooks([serve, { stopped: stoppedLine(2) }], {
      ...gained(5),
      rejectsByReason: { bad_payload: 2 },
      rejectedMessages: 2,
    }),
    [],
  );
});

Deno.test("compareBooks: a SIGKILLed serve allows rows nobody reported, never fewer rows than reported", () => {
  const serves: AuditedServe[] = [{ stopped: stoppedLine(3) }, { stopped: null, killed: true }];
  assert.deepEqual(compareBooks(serves, gained(10)), []);
  assert.match(compareBooks(serves, gained(2)).join(), /counted 3, the table gained 2 \(at least/);
  // A start that failed must have written nothing.
  assert.match(
    compareBooks([{ stopped: null, failedStart: true }], gained(1)).join(),
    /counted 0, the table gained 1/,
  );
});

Deno.test("the audit of stop() throws when a stored row is deleted behind serve's back", async () => {
  const f = await startServeFixture({ args: ["--batch-interval-ms", "20"] });
  let closed = false;
  try {
    const topic = f.serve.feedTopic(f.user, "d1", "temp");
    for (const v of ["1", "2", "{bad"]) await publish(f.pub, topic, v);
    await waitFor("three processed", () => f.serve.metrics.processed.total() === 3);
    await f.db.sql`delete from feed_values where value = 2`;
    closed = true;
    await assert.rejects(f.close(), (e) => {
      assert.ok(e instanceof AuditError, String(e));
      assert.match(
        e.message,
        /feed_values \(readingsStored\): serve counted 2, the table gained 1/,
      );
      return true;
    });
  } finally {
    if (!closed) await f.close();
  }
});

Deno.test("the audit of stop() throws when serve's counts are doctored", async () => {
  const f = await startServeFixture({ args: ["--batch-interval-ms", "20"] });
  let closed = false;
  try {
    await publish(f.pub, f.serve.feedTopic(f.user, "d1", "temp"), "1");
    await waitFor("one stored", () => f.serve.metrics.stored.total() === 1);
    // A status event and a reject row counted that no commit wrote.
    f.serve.metrics.statuses.inc();
    f.serve.metrics.rejected.inc({ reason: "db_rejected" });
    closed = true;
    await assert.rejects(f.close(), (e) => {
      assert.ok(e instanceof AuditError, String(e));
      assert.match(e.message, /device_status_events.*serve counted 1, the table gained 0/);
      assert.match(e.message, /reason="db_rejected".*serve counted 1, the table gained 0/);
      return true;
    });
  } finally {
    if (!closed) await f.close();
  }
});

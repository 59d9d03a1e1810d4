/**
 * Clock lanes leased in PostgreSQL (src/db/ingest_lanes.ts), against the test database:
 * distinct lanes for concurrent instances, a full table refused, an expired lease taken
 * over and noticed by its old holder, the floor a released lane hands on.
 */
import assert from "node:assert/strict";
import { type LaneClock, LANES, leaseLane } from "../src/db/ingest_lanes.ts";
import { createLogger } from "../src/log.ts";
import { createTestDatabase } from "./support/db.ts";
import { waitFor } from "./support/serve.ts";

/** A stand-in for src/clock.ts, so several leases can live in one process. */
function testClock(lastUs = 0) {
  const clock = {
    lane: -1,
    lanes: 0,
    floor: 0,
    last: lastUs,
    setLane(lane: number, lanes: number, floorUs: number) {
      clock.lane = lane;
      clock.lanes = lanes;
      clock.floor = floorUs;
    },
    lastUs: () => clock.last,
  };
  return clock satisfies LaneClock;
}

function logLines() {
  const lines: Record<string, unknown>[] = [];
  return { lines, log: createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) }) };
}

Deno.test("concurrent instances lease distinct lanes; one more than LANES is refused", async () => {
  const db = await createTestDatabase();
  const { log } = logLines();
  try {
    const clocks = Array.from({ length: LANES }, () => testClock());
    const leases = await Promise.all(
      clocks.map((clock, i) => leaseLane(db.sql, { holder: `fl-${i}`, log, clock })),
    );
    assert.deepEqual(
      leases.map((l) => l.lane).sort((a, b) => a - b),
      Array.from({ length: LANES }, (_, i) => i),
    );
    for (const [i, c] of clocks.entries()) {
      assert.equal(c.lane, leases[i].lane);
      assert.equal(c.lanes, LANES);
    }
    await assert.rejects(
      leaseLane(db.sql, { holder: "one-too-many", log, clock: testClock() }),
      (e: Error & { code?: string }) =>
        e.code === "NO_FREE_LANE" && e.message.includes(`${LANES} of ${LANES} are held`),
    );
    await Promise.all(leases.map((l) => l.release()));
    const [{ held }] = await db.sql`
      select count(*)::int as held from ingest_lanes where token is not null`;
    assert.equal(held, 0);
  } finally {
    await db.close();
  }
});

Deno.test("a released lane's next holder starts above the highest stamp given", async () => {
  const db = await createTestDatabase();
  const { log } = logLines();
  try {
    const high = Date.now() * 1000 + 5_000_000; // a clock that ran 5 s ahead
    const first = await leaseLane(db.sql, { holder: "a", log, clock: testClock(high) });
    const lane = first.lane;
    await first.release();
    const clock = testClock();
    const second = await leaseLane(db.sql, { holder: "b", log, clock });
    assert.equal(second.lane, lane, "a released lane is taken first");
    assert.equal(clock.floor, high);
    await second.release();
  } finally {
    await db.close();
  }
});

Deno.test("a lease that expired and was taken over: its holder takes another lane and warns", async () => {
  const db = await createTestDatabase();
  const a = logLines();
  try {
    const clockA = testClock();
    const leaseA = await leaseLane(db.sql, {
      holder: "a",
      log: a.log,
      clock: clockA,
      ttlMs: 60_000,
      renewMs: 200,
    });
    const lost = leaseA.lane;
    // As if A could not reach the database for longer than the expiry, and B came.
    await db
      .sql`update ingest_lanes set expires_at = now() - interval '1 second' where lane = ${lost}`;
    await db.sql`update ingest_lanes set expires_at = now() + interval '1 hour', token = null
                 where lane <> ${lost}`;
    const clockB = testClock();
    const leaseB = await leaseLane(db.sql, { holder: "b", log: a.log, clock: clockB });
    assert.equal(leaseB.lane, lost, "B takes the expired lane");
    await db.sql`update ingest_lanes set expires_at = '-infinity' where lane <> ${lost}`;
    await waitFor("A to notice", () => a.lines.some((l) => l.level === "warn"), 5_000);
    const warn = a.lines.find((l) => l.level === "warn")!;
    assert.match(String(warn.msg), /another instance took it; took another lane/);
    assert.equal(warn.lost, lost);
    assert.notEqual(warn.lane, lost);
    assert.equal(clockA.lane, warn.lane);
    assert.equal(leaseA.lane, warn.lane);
    await leaseA.release();
    await leaseB.release();
  } finally {
    await db.close();
  }
});

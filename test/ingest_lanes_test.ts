/**
 * Clock lanes leased in PostgreSQL (src/db/ingest_lanes.ts), against the test database:
 * distinct lanes for concurrent instances, a full table refused, an expired lease taken
 * over and noticed by its old holder, the floor a released lane hands on.
 */
import assert from "node:assert/strict";
import { type LaneClock, type LaneLease, LANES, leaseLane } from "../src/db/ingest_lanes.ts";
import { createLogger } from "../src/log.ts";
import { createTestDatabase } from "./support/db.ts";
import {
  connectClient,
  endClient,
  prefixedTopicArgs,
  publish,
  type ServeProcess,
  spawnServe,
  uniquePrefix,
  waitFor,
} from "./support/serve.ts";

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

Deno.test({
  name:
    "a restart after a SIGKILL takes back its lane above every stamp the killed holder committed",
  // A batch held committing while another lease reads: two backends. The embedded PGlite
  // is one, and there the lease waits on the held batch for ever.
  ignore: !Deno.env.get("TEST_DATABASE_URL"),
}, async () => {
  const db = await createTestDatabase();
  const { log } = logLines();
  // Leases renewed an hour apart: killed ones are never renewed nor released (released
  // after the test only to stop their timers).
  const lease = (clock: LaneClock) =>
    leaseLane(db.sql, { holder: "fl-crashing", log, clock, renewMs: 3_600_000 });
  const leases: LaneLease[] = [];
  // Set while a batch of B is held committing: a failure before it commits must let it
  // commit, or the releases below wait on its row lock for ever.
  let commitHeld: (() => void) | null = null;
  let committing: Promise<unknown> = Promise.resolve();
  try {
    const clockA = testClock();
    const a = await lease(clockA);
    leases.push(a);
    // A burst stamped 10 s ahead of the wall clock (more than 62,500 messages a second),
    // committed since the last renewal, then the kill.
    clockA.last = Date.now() * 1000 + 10_000_000;
    await db.sql.begin((tx) => a.recordStamps(tx, async () => void await tx`select 1`));
    const clockB = testClock();
    const b = await lease(clockB);
    leases.push(b);
    assert.equal(b.lane, a.lane, "the restart takes back its lane");
    assert.ok(clockB.floor >= clockA.last, `floor ${clockB.floor} < stamp ${clockA.last}`);

    // Killed while a batch is committing: its row is locked, so the restart takes another
    // lane rather than read a mark that batch may still raise.
    clockB.last = clockB.floor + 5_000_000;
    const held = new Promise<void>((r) => commitHeld = r);
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => locked = r);
    committing = db.sql.begin((tx) =>
      b.recordStamps(tx, async () => {
        // The mark goes out with the batch's first statement, not awaited before it
        // (src/db/ingest_lanes.ts): once a statement after it answered, the row is locked.
        await tx`select 1`;
        locked();
        await held;
      })
    );
    await isLocked;
    const clockC = testClock();
    const c = await lease(clockC);
    leases.push(c);
    assert.notEqual(c.lane, b.lane, "the lane of a batch still committing is not taken");
    commitHeld!();
    await committing;
    const clockD = testClock();
    const d = await lease(clockD);
    leases.push(d);
    const [{ mark }] = await db.sql`
      select stamped_until_us::text as mark from ingest_lanes where lane = ${b.lane}`;
    assert.equal(Number(mark), clockB.last);
    assert.equal(d.lane, b.lane, "the next restart takes it back once the batch committed");
    assert.ok(clockD.floor >= clockB.last, `floor ${clockD.floor} < stamp ${clockB.last}`);
  } finally {
    (commitHeld as (() => void) | null)?.();
    await committing.catch(() => {});
    for (const l of leases) await l.release();
    await db.close();
  }
});

Deno.test({
  name: "30 SIGKILL restarts of one client id in a shared group: each takes back its lane, " +
    "and the next serve starts",
  ignore: !Deno.env.get("TEST_MQTT_URL"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const db = await createTestDatabase();
    const prefix = uniquePrefix();
    const clientId = `feedline-crashloop-${prefix}`;
    const args = [
      "--http",
      "off",
      "--shared-group",
      `g${prefix}`,
      "--client-id",
      clientId,
      ...prefixedTopicArgs(prefix),
    ];
    const env = { DATABASE_URL: db.url, MQTT_URL: Deno.env.get("TEST_MQTT_URL")! };
    const { log } = logLines();
    // What SIGKILL leaves of an in-process restart: a lease nobody renews or releases
    // (renewals an hour apart; released after the test only to stop their timers).
    const killed: LaneLease[] = [];
    let serve: ServeProcess | null = null;
    try {
      // Restart 1 is a real serve: it stores a reading without a device time, is killed.
      const user = crypto.randomUUID();
      await db.sql`insert into users (id) values (${user})`;
      await db.sql`insert into feeds (user_id, key) values (${user}, 'temp')`;
      serve = spawnServe(args, env);
      const lane = (await serve.waitForLog("clock lane leased")).lane as number;
      await serve.waitForLog("subscribed");
      const pub = await connectClient(env.MQTT_URL, 5);
      await publish(pub, `${prefix}/${user}/d1/feeds/temp`, "21.5");
      await endClient(pub);
      let stamp = 0;
      await waitFor("the reading stored", async () => {
        const rows = await db.sql`
          select (extract(epoch from created_at) * 1e6)::int8::text as us from feed_values`;
        stamp = rows.length > 0 ? Number(rows[0].us) : 0;
        return stamp > 0;
      });
      assert.equal(await serve.signal("SIGKILL"), 137);
      serve = null;
      // Restarts 2..29 in-process, one after the other, each "killed" at once. (Before
      // lanes were taken back, restart 17 failed here with NO_FREE_LANE.)
      const clocks = Array.from({ length: 28 }, () => testClock());
      for (const clock of clocks) {
        killed.push(
          await leaseLane(db.sql, { holder: clientId, log, clock, renewMs: 3_600_000 }),
        );
      }
      assert.deepEqual(new Set(killed.map((l) => l.lane)), new Set([lane]), "lane taken back");
      // Restart 2 started above the stamp restart 1 stored: its batch recorded the stamp in
      // the lane (no renewal ran; they are 5 s apart).
      assert.ok(clocks[0].floor >= stamp, `floor ${clocks[0].floor} < stamp ${stamp}`);
      // Restart 30 is a real serve again: it starts, in the same lane.
      serve = spawnServe(args, env);
      assert.equal((await serve.waitForLog("clock lane leased")).lane, lane);
      await serve.waitForLog("subscribed");
      const [{ held }] = await db.sql`
        select count(*)::int as held from ingest_lanes
        where token is not null and expires_at >= now()`;
      assert.equal(held, 1, "one lane held by the one client id");
      assert.equal(await serve.signal("SIGTERM"), 0);
      serve = null;
    } finally {
      await serve?.signal("SIGKILL");
      for (const lease of killed) await lease.release();
      await db.close();
    }
  },
});

/**
 * Device registration means something (issue 12): a reading from a device that is not
 * registered under its user is rejected as `unknown_device`, as its status messages
 * are; `--accept-unregistered-devices` keeps the reference design's behaviour, and
 * auto-register still creates the device.
 */
import assert from "node:assert/strict";
import { compileTopics } from "../src/core/topics.ts";
import { DeviceCache } from "../src/ingest/device_cache.ts";
import { processBatch } from "../src/ingest/processor.ts";
import { withTestDatabase } from "./support/db.ts";
import { startServeFixture } from "./support/fixture.ts";
import { publish, waitFor } from "./support/serve.ts";
import { decodedMessage } from "./support/messages.ts";

const decodeOpts = {
  router: compileTopics(),
  maxPayloadBytes: 65536,
  maxTextLength: 255,
  maxFutureSkewMs: 300_000,
};

const msg = (topic: string, payload: string) => decodedMessage(topic, payload, decodeOpts);

Deno.test("processBatch() with requireDevice rejects readings of an unregistered device and caches the registered ones", () =>
  withTestDatabase(async (sql) => {
    const u = crypto.randomUUID();
    await sql`insert into users (id) values (${u})`;
    await sql`insert into devices (user_id, code) values (${u}, 'd1')`;
    await sql`insert into feeds (user_id, key) values (${u}, 'temp'), (${u}, 'hum')`;
    const deviceCache = new DeviceCache({ ttlMs: 60_000 });
    const opts = { requireDevice: true, deviceCache };
    const result = await processBatch(sql, [
      msg(`${u}/d1/feeds/temp`, "1"),
      msg(`${u}/ghost/feeds/temp`, "2"),
      msg(`${u}/ghost/feeds`, '{"temp": 3, "hum": 4}'),
      msg(`${u}/d1/feeds`, '{"temp": 5, "hum": 6}'),
    ], opts);
    assert.deepEqual(result.outcomes, { stored: 2, rejected: 2, skipped: 0 });
    assert.deepEqual(result.rejected, { unknown_device: 2 });
    assert.equal(deviceCache.size, 1);
    const values = await sql`select value from feed_values order by value`;
    assert.deepEqual(values.map((r) => r.value), [1, 5, 6]);
    // Without the requirement, the same reading is stored.
    const open = await processBatch(sql, [msg(`${u}/ghost/feeds/temp`, "7")]);
    assert.equal(open.stored, 1);
  }));

Deno.test("status messages find their device through the device cache; one deleted meanwhile is dead-lettered once, then unknown", () =>
  withTestDatabase(async (sql) => {
    const u = crypto.randomUUID();
    await sql`insert into users (id) values (${u})`;
    await sql`insert into devices (user_id, code) values (${u}, 'd1')`;
    const deviceCache = new DeviceCache({ ttlMs: 60_000 });
    const first = await processBatch(sql, [msg(`${u}/d1/status`, "online")], { deviceCache });
    assert.equal(first.statuses, 1);
    assert.equal(deviceCache.size, 1, "the status' device is cached");
    // The cached id of a device deleted meanwhile: the database refuses its event.
    await sql`delete from devices where user_id = ${u}`;
    const stale = await processBatch(sql, [msg(`${u}/d1/status`, "offline")], { deviceCache });
    assert.deepEqual(stale.rejected, { db_rejected: 1 });
    assert.equal(deviceCache.size, 0, "a refused status clears the device cache");
    const fresh = await processBatch(sql, [msg(`${u}/d1/status`, "online")], { deviceCache });
    assert.deepEqual(fresh.rejected, { unknown_device: 1 });
    const [{ n }] = await sql`select count(*)::int as n from ingest_rejects`;
    assert.equal(n, 2);
  }));

Deno.test("serve rejects readings of an unregistered device by default, and stores them with --accept-unregistered-devices", async () => {
  for (const accept of ["off", "on"]) {
    const f = await startServeFixture({
      device: "dev1",
      env: { FEEDLINE_ACCEPT_UNREGISTERED_DEVICES: accept },
      args: ["--batch-interval-ms", "50"],
    });
    try {
      await publish(f.pub, f.serve.feedTopic(f.user, "dev1", "temp"), "21.5");
      await publish(f.pub, f.serve.feedTopic(f.user, "ghost", "temp"), "22.5");
      await waitFor("both processed", () => f.serve.metrics.processed.total() === 2);
      const stored = await f.db.sql`select value from feed_values order by value`;
      const rejects = await f.db.sql`select reason, topic from ingest_rejects`;
      if (accept === "off") {
        assert.deepEqual(stored.map((r) => r.value), [21.5]);
        assert.deepEqual(rejects.map((r) => r.reason), ["unknown_device"]);
        assert.match(rejects[0].topic, /\/ghost\/feeds\/temp$/);
      } else {
        assert.deepEqual(stored.map((r) => r.value), [21.5, 22.5]);
        assert.equal(rejects.length, 0);
      }
    } finally {
      await f.close();
    }
  }
});

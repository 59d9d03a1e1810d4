/**
 * Issue 22, mappings: each recipe of deploy/mappings/, unedited, ingests payloads of its
 * ecosystem (written from the projects' public documentation) through `serve --mappings`
 * against real Mosquitto and PostgreSQL: rows with the right feed keys, values and times,
 * and the device's status. A tenant alias not yet registered is rejected as
 * `unknown_tenant` and stored by `replay --rejects` once it is; a CBOR fleet's capture
 * replays into another database byte for byte.
 */
import assert from "node:assert/strict";
import { encode } from "cborg";
import type postgres from "postgres";
import { parseReplayArgs } from "../src/cli/replay_options.ts";
import { parseServeArgs } from "../commands/serve.ts";
import { runReplay } from "../commands/replay.ts";
import { createTestDatabase, withTestDatabase } from "./support/db.ts";
import { loadMappings } from "../src/cli/option_groups.ts";
import { type DecodeOptions } from "../src/core/decode.ts";
import { listenForChanges } from "../src/ingest/feed_notify.ts";
import { processBatch } from "../src/ingest/processor.ts";
import { tenantAliasListener, TenantCache } from "../src/ingest/tenant_cache.ts";
import { silentLogger } from "../src/log.ts";
import { encodeSparkplug } from "../src/core/sparkplug/encode.ts";
import { DATATYPES as T } from "../src/core/sparkplug/schema.ts";
import { startServeFixture } from "./support/fixture.ts";
import { publish, waitFor } from "./support/serve.ts";
import { decodedMessage } from "./support/messages.ts";

const RECIPES = new URL("../deploy/mappings/", import.meta.url);
const recipe = (name: string) => new URL(`${name}.json`, RECIPES).pathname;

/** Decode options of serve with `--mappings` set to the recipe `name`. */
function recipeDecodeOptions(name: string): DecodeOptions {
  const mappings = loadMappings(recipe(name));
  return {
    router: mappings.router,
    mappings,
    maxPayloadBytes: 65536,
    maxTextLength: 255,
    maxFutureSkewMs: 300_000,
  };
}

/** A device name no other run of this test uses (the recipes' topics are fixed). */
const unique = (base: string) => `${base}_${crypto.randomUUID().slice(0, 6)}`;

/** Registers `alias` (if given), the devices and their feeds for `user`. */
async function register(
  sql: postgres.Sql,
  user: string,
  alias: string | null,
  feeds: Record<string, string[]>,
): Promise<void> {
  if (alias) await sql`insert into tenant_aliases (alias, user_id) values (${alias}, ${user})`;
  for (const [device, keys] of Object.entries(feeds)) {
    await sql`insert into devices (user_id, code) values (${user}, ${device})`;
    for (const key of keys) {
      await sql`insert into feeds (user_id, key, device_id) values (${user}, ${key},
        (select id from devices where user_id = ${user} and code = ${device}))`;
    }
  }
}

/** Every stored reading of `user`: `feed key → value or text [@ time]` (time when given). */
async function stored(sql: postgres.Sql, user: string): Promise<Record<string, string>> {
  const rows = await sql<{ key: string; value: number | null; text: string | null; at: string }[]>`
    select f.key, v.value, v.value_text as text,
           to_char(v.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as at
    from feed_values v join feeds f on f.id = v.feed_id where f.user_id = ${user}`;
  return Object.fromEntries(rows.map((r) => [r.key, `${r.value ?? r.text} @ ${r.at}`]));
}

async function deviceStatus(sql: postgres.Sql, user: string, code: string): Promise<string> {
  const [row] = await sql`select status from devices where user_id = ${user} and code = ${code}`;
  return row?.status;
}

async function count(sql: postgres.Sql, table: "feed_values" | "ingest_rejects"): Promise<number> {
  const [{ n }] = await sql`select count(*)::int as n from ${sql(table)}`;
  return n;
}

Deno.test("zigbee2mqtt recipe: a sensor's state lands as <device>.<field> at last_seen, availability sets its status", async () => {
  const sensor = unique("living_room");
  const f = await startServeFixture({
    feeds: [],
    prepare: (db, user) =>
      register(db.sql, user, "zigbee2mqtt", {
        [sensor]: [`${sensor}.temperature`, `${sensor}.humidity`, `${sensor}.battery`],
      }),
    args: ["--mappings", recipe("zigbee2mqtt")],
  });
  try {
    await publish(f.pub, `zigbee2mqtt/${sensor}/availability`, '{"state":"online"}');
    await publish(
      f.pub,
      `zigbee2mqtt/${sensor}`,
      '{"battery":97,"humidity":45.21,"linkquality":120,"temperature":21.5,' +
        '"last_seen":"2026-01-15T11:59:58.123Z"}',
    );
    await waitFor("three readings", async () => (await count(f.db.sql, "feed_values")) === 3);
    assert.deepEqual(await stored(f.db.sql, f.user), {
      [`${sensor}.battery`]: "97 @ 2026-01-15T11:59:58.123Z",
      [`${sensor}.humidity`]: "45.21 @ 2026-01-15T11:59:58.123Z",
      [`${sensor}.temperature`]: "21.5 @ 2026-01-15T11:59:58.123Z",
    });
    assert.equal(await deviceStatus(f.db.sql, f.user, sensor), "online");
    // The legacy bare word, too.
    await publish(f.pub, `zigbee2mqtt/${sensor}/availability`, "offline");
    await waitFor(
      "offline",
      async () => (await deviceStatus(f.db.sql, f.user, sensor)) === "offline",
    );
    assert.equal(await count(f.db.sql, "ingest_rejects"), 0);
  } finally {
    await f.close();
  }
});

Deno.test("tasmota recipe: SENSOR, STATE and LWT land; an unregistered alias is unknown_tenant, then stored by replay --rejects", async () => {
  const plug = unique("tasmota_1A2B3C");
  let user = "";
  const f = await startServeFixture({
    feeds: [],
    prepare: (db, u) => {
      user = u;
      return register(db.sql, u, null, {
        [plug]: [`${plug}.ENERGY.Power`, `${plug}.ENERGY.Total`, `${plug}.POWER`],
      });
    },
    args: ["--mappings", recipe("tasmota")],
  });
  try {
    const sensor = '{"Time":"2026-01-15T13:00:00","ENERGY":{"TotalStartTime":' +
      '"2025-11-02T10:11:12","Total":12.345,"Power":45}}';
    await publish(f.pub, `tele/${plug}/SENSOR`, sensor);
    await waitFor("unknown_tenant", async () => (await count(f.db.sql, "ingest_rejects")) === 1);
    const [reject] = await f.db.sql`select reason, detail from ingest_rejects`;
    assert.equal(reject.reason, "unknown_tenant");
    assert.match(reject.detail, /no tenant alias "tasmota"/);

    // Registered with one insert: what arrives next is stored at once.
    await f.db.sql`insert into tenant_aliases (alias, user_id) values ('tasmota', ${user})`;
    await publish(f.pub, `tele/${plug}/LWT`, "Online");
    await publish(
      f.pub,
      `tele/${plug}/STATE`,
      '{"Time":"2026-01-15T13:00:05","UptimeSec":3723,"POWER":"ON","Wifi":{"RSSI":80}}',
    );
    await publish(f.pub, `tele/${plug}/LWT`, "Offline");
    await waitFor(
      "offline",
      async () => (await deviceStatus(f.db.sql, f.user, plug)) === "offline",
    );
    assert.deepEqual(Object.keys(await stored(f.db.sql, f.user)), [`${plug}.POWER`]);
    await f.serve.stop(); // its books are audited here; replay writes after

    // The dead-lettered SENSOR message is stored by replay --rejects.
    const totals = await runReplay(
      parseReplayArgs(["--rejects", "--mappings", recipe("tasmota"), "--progress", "off"], {
        DATABASE_URL: f.db.url,
      }),
      { out: () => {}, err: () => {}, errIsTerminal: false },
    );
    assert.equal(totals.rejectsCleared, 1);
    const rows = await stored(f.db.sql, f.user);
    assert.deepEqual(Object.keys(rows).sort(), [
      `${plug}.ENERGY.Power`,
      `${plug}.ENERGY.Total`,
      `${plug}.POWER`,
    ]);
    assert.match(rows[`${plug}.ENERGY.Total`], /^12\.345 @ /);
    assert.match(rows[`${plug}.POWER`], /^ON @ /);
    // Wifi.RSSI and UptimeSec are not registered feeds here: dead-lettered as unknown_feed.
    const reasons = await f.db.sql`select reason from ingest_rejects`;
    assert.deepEqual(reasons.map((r) => r.reason), ["unknown_feed"]);
  } finally {
    await f.close();
  }
});

Deno.test("shelly-gen2 recipe: NotifyStatus at the device's ts, component status, events skipped, online false", async () => {
  const id = `shellyplus1pm-${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const f = await startServeFixture({
    feeds: [],
    prepare: (db, user) =>
      register(db.sql, user, "shelly", {
        [id]: [`${id}.switch:0.apower`, `${id}.switch:0.aenergy.total`, `${id}.switch:0.output`],
      }),
    args: ["--mappings", recipe("shelly-gen2")],
  });
  try {
    await publish(f.pub, `${id}/online`, "true");
    await publish(
      f.pub,
      `${id}/events/rpc`,
      `{"src":"${id}","dst":"${id}/events","method":"NotifyStatus","params":{"ts":1768478390.25,` +
        '"switch:0":{"id":0,"apower":12.5,"aenergy":{"by_minute":[150.3,201.1,199.8],' +
        '"minute_ts":1768478340,"total":1234.567}}}}',
    );
    await publish(
      f.pub,
      `${id}/events/rpc`,
      `{"src":"${id}","dst":"${id}/events","method":"NotifyEvent","params":{"ts":1768478391.1,` +
        '"events":[{"component":"input:0","id":0,"event":"single_push","ts":1768478391.1}]}}',
    );
    await publish(f.pub, `${id}/status/switch:0`, '{"id":0,"source":"button","output":true}');
    await publish(f.pub, `${id}/online`, "false");
    await waitFor("offline", async () => (await deviceStatus(f.db.sql, f.user, id)) === "offline");
    await waitFor("three readings", async () => (await count(f.db.sql, "feed_values")) === 3);
    const rows = await stored(f.db.sql, f.user);
    assert.equal(rows[`${id}.switch:0.apower`], "12.5 @ 2026-01-15T11:59:50.250Z");
    assert.equal(rows[`${id}.switch:0.aenergy.total`], "1234.567 @ 2026-01-15T11:59:50.250Z");
    assert.match(rows[`${id}.switch:0.output`], /^1 @ /);
    assert.equal(await count(f.db.sql, "ingest_rejects"), 0);
    const [{ online }] = await f.db.sql`
      select count(*) filter (where status = 'online')::int as online from device_status_events`;
    assert.equal(online, 1);
  } finally {
    await f.close();
  }
});

Deno.test("cbor through serve: stored by rule, captured, and the capture replays byte for byte into another database", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/cbor.json`;
  const prefix = `c${crypto.randomUUID().slice(0, 8)}`;
  await Deno.writeTextFile(
    file,
    JSON.stringify({
      rules: [{
        name: "cbor",
        topic: `${prefix}/{user_id}/{device}`,
        format: "cbor",
        readings: "all",
        time: "ts",
      }],
    }),
  );
  const capture = `${dir}/capture.jsonl`;
  const f = await startServeFixture({
    feeds: ["d1.temp", "d1.raw"],
    device: "d1",
    args: ["--mappings", file, "--capture", capture],
  });
  try {
    // Not UTF-8 (0xf9 starts a half float, 0xfb a double): kept as payload_b64.
    const payload = encode({ temp: 21.5, raw: 0.1, ts: 1768478390 });
    assert.equal(
      new TextDecoder("utf-8", { fatal: false }).decode(payload).includes("\ufffd"),
      true,
    );
    await publish(f.pub, `${prefix}/${f.user}/d1`, payload);
    await waitFor("two readings", async () => (await count(f.db.sql, "feed_values")) === 2);
    await f.serve.stop();
    await withTestDatabase(async (other, url) => {
      await other`insert into users (id) values (${f.user}) on conflict do nothing`;
      const totals = await runReplay(
        parseReplayArgs(["--mappings", file, "--auto-register", "--progress", "off", capture], {
          DATABASE_URL: url,
        }),
        { out: () => {}, err: () => {}, errIsTerminal: false },
      );
      assert.equal(totals.messages, 1);
      assert.deepEqual(await stored(other, f.user), await stored(f.db.sql, f.user));
    });
  } finally {
    await f.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serve --mappings: a wrong file or a template flag beside it stops the start with one line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const env = { DATABASE_URL: "postgres://127.0.0.1/x", MQTT_URL: "mqtt://127.0.0.1" };
    await Deno.writeTextFile(
      `${dir}/bad.json`,
      '{"rules":[{"name":"x","topic":"a/{device}","tenant":{"alias":"a"},"readings":"some"}]}',
    );
    assert.throws(
      () => parseServeArgs(["--mappings", `${dir}/bad.json`], env),
      {
        message:
          `mappings ${dir}/bad.json: rule 1 ("x"): readings: "all", a list of paths, or an object of names to paths`,
      },
    );
    await Deno.writeTextFile(`${dir}/broken.json`, "{");
    assert.throws(() => parseServeArgs(["--mappings", `${dir}/broken.json`], env), /is not JSON/);
    assert.throws(
      () =>
        parseServeArgs([
          "--mappings",
          recipe("tasmota"),
          "--feed-topic",
          "a/{user_id}/{device_code}/{feed_key}",
        ], env),
      {
        message:
          "--mappings replaces the topic templates; drop --feed-topic (or write its topic as a rule)",
      },
    );
    const config = parseServeArgs([], { ...env, FEEDLINE_MAPPINGS: recipe("zigbee2mqtt") });
    assert.deepEqual(config.router.filters, ["zigbee2mqtt/+", "zigbee2mqtt/+/availability"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tenant aliases: resolved once and cached, a changed alias dropped through NOTIFY, created in dev mode", async () => {
  const db = await createTestDatabase();
  try {
    const opts = recipeDecodeOptions("tasmota");
    const msg = (topic: string, payload: string) => decodedMessage(topic, payload, opts);
    const [a, b] = [crypto.randomUUID(), crypto.randomUUID()];
    await db.sql`insert into users (id) values (${a}), (${b})`;
    await db.sql`insert into tenant_aliases (alias, user_id) values ('tasmota', ${a})`;
    for (const u of [a, b]) await db.sql`insert into feeds (user_id, key) values (${u}, 'p.POWER')`;
    const tenantCache = new TenantCache({ ttlMs: 3_600_000 });
    // PGlite (no TEST_DATABASE_URL) has no LISTEN: the cache then relies on its TTL.
    const listening = await listenForChanges(
      db.sql,
      tenantAliasListener(tenantCache),
      silentLogger,
    );
    assert.equal(listening, Deno.env.get("TEST_DATABASE_URL") !== undefined);
    const first = await processBatch(
      db.sql,
      [msg("stat/p/POWER", "ON"), msg("stat/z/POWER", "ON")],
      {
        tenantCache,
      },
    );
    assert.equal(first.stored, 1);
    // A reject of an aliased message names the alias's user (feedback, alert events).
    assert.deepEqual(first.rejects.map((r) => [r.reason, r.userId]), [["unknown_feed", a]]);
    assert.equal(tenantCache.get("tasmota"), a);

    // The alias moves to another user: the cached answer is dropped at once.
    await db.sql`update tenant_aliases set user_id = ${b} where alias = 'tasmota'`;
    if (listening) {
      await waitFor("the alias dropped", () => tenantCache.get("tasmota") === undefined);
    } else tenantCache.clear();
    await processBatch(db.sql, [msg("stat/p/POWER", "OFF")], { tenantCache });
    const rows = await db.sql`
      select f.user_id, v.value_text from feed_values v join feeds f on f.id = v.feed_id
      order by v.created_at`;
    assert.deepEqual(rows.map((r) => [r.user_id, r.value_text]), [[a, "ON"], [b, "OFF"]]);

    // Dev mode: an unknown alias gets a user of its own, and its device and feed.
    await db.sql`delete from tenant_aliases`;
    // As above: the removal reaches the cache through NOTIFY, not at once.
    if (listening) {
      await waitFor("the alias dropped", () => tenantCache.get("tasmota") === undefined);
    } else tenantCache.clear();
    const dev = await processBatch(db.sql, [msg("stat/q/POWER", "ON")], {
      tenantCache,
      autoRegister: true,
    });
    assert.equal(dev.stored, 1);
    const [made] = await db.sql`
      select t.user_id, f.key from tenant_aliases t join feeds f on f.user_id = t.user_id`;
    assert.equal(made.key, "q.POWER");
    assert.notEqual(made.user_id, a);
  } finally {
    await db.close();
  }
});

Deno.test("sparkplug-b recipe: a BIRTH and DATA by alias through the mappings registry land for the alias's user", async () => {
  const db = await createTestDatabase();
  try {
    const opts = recipeDecodeOptions("sparkplug-b");
    const msg = (topic: string, payload: Uint8Array) => decodedMessage(topic, payload, opts);
    const user = crypto.randomUUID();
    await db.sql`insert into users (id) values (${user})`;
    const now = Date.now();
    const birth = encodeSparkplug({
      timestamp: now - 2,
      seq: 0,
      metrics: [
        { name: "bdSeq", datatype: T.Int64, value: 1 },
        { name: "Inputs/Temp", alias: 10, datatype: T.Float, value: 20.5 },
      ],
    });
    const data = encodeSparkplug({
      timestamp: now - 1,
      seq: 1,
      metrics: [{ alias: 10, datatype: T.Float, sendDatatype: false, value: 21.5 }],
    });
    const processor = { tenantCache: new TenantCache(), sparkplug: { register: true } };
    // The alias is not registered yet: both are unknown_tenant, nothing else is written.
    const early = await processBatch(
      db.sql,
      [msg("spBv1.0/plant/NBIRTH/edge-1", birth)],
      processor,
    );
    assert.deepEqual(early.rejected, { unknown_tenant: 1 });
    await db.sql`insert into tenant_aliases (alias, user_id) values ('sparkplug', ${user})`;
    const result = await processBatch(db.sql, [
      msg("spBv1.0/plant/NBIRTH/edge-1", birth),
      msg("spBv1.0/plant/NDATA/edge-1", data),
    ], processor);
    assert.deepEqual(result.rejected, {});
    const rows = await db.sql`
      select f.key, v.value from feed_values v join feeds f on f.id = v.feed_id
      where f.user_id = ${user} order by v.created_at`;
    assert.deepEqual(rows.map((r) => [r.key, r.value]), [
      ["plant.edge-1.Inputs.Temp", 20.5],
      ["plant.edge-1.Inputs.Temp", 21.5],
    ]);
    const [device] = await db.sql`select status from devices where user_id = ${user}`;
    assert.equal(device.status, "online");
  } finally {
    await db.close();
  }
});

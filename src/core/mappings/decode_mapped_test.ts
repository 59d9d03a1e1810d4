/**
 * Decoding by mapping rules: the recipes of deploy/mappings/ on payloads of their
 * ecosystems (written from the projects' public documentation), CBOR, tenants, limits,
 * and a wrong file refused with one line naming the rule and the field.
 */
import assert from "node:assert/strict";
import { encode } from "cborg";
import { decode, type DecodeOptions } from "../decode.ts";
import type { Decoded } from "../message.ts";
import { compileTopics } from "../topics.ts";
import { compileMappings, type Mappings } from "./decode_mapped.ts";
import { encodeSparkplug } from "../sparkplug/encode.ts";

const NOW_US = Date.UTC(2026, 0, 15, 12, 0, 0) * 1000;
const USER = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";

function recipe(name: string): Mappings {
  const url = new URL(`../../../deploy/mappings/${name}.json`, import.meta.url);
  return compileMappings(JSON.parse(Deno.readTextFileSync(url)), `${name}.json`);
}

function optsOf(mappings: Mappings, extra: Partial<DecodeOptions> = {}): DecodeOptions {
  return {
    router: compileTopics(),
    mappings,
    maxPayloadBytes: 65536,
    maxTextLength: 255,
    maxFutureSkewMs: 300_000,
    ...extra,
  };
}

function run(
  mappings: Mappings,
  topic: string,
  payload: string | Uint8Array,
  extra: Partial<DecodeOptions> = {},
): Decoded {
  const bytes = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  return decode(
    { topic, payload: bytes, qos: 1, retain: false, receivedAtUs: NOW_US },
    optsOf(mappings, extra),
  );
}

/** The readings of a decoded message as `feed key → value or text @ time`. */
function readingsOf(d: Decoded): Record<string, string> {
  assert.equal(d.kind, "readings", JSON.stringify(d));
  if (d.kind !== "readings") return {};
  return Object.fromEntries(d.readings.map((r) => [
    r.feedKey,
    `${r.value ?? r.text}${r.tsUs === null ? "" : ` @ ${new Date(r.tsUs / 1000).toISOString()}`}`,
  ]));
}

Deno.test("zigbee2mqtt recipe: a sensor's state becomes readings named <device>.<field>", () => {
  const z = recipe("zigbee2mqtt");
  const d = run(
    z,
    "zigbee2mqtt/living_room",
    '{"battery":97,"humidity":45.21,"linkquality":120,"temperature":21.5,"voltage":2995,' +
      '"update":{"installed_version":587765297,"latest_version":587765297,"state":"idle"},' +
      '"last_seen":"2026-01-15T11:59:58.123Z"}',
  );
  assert.deepEqual(readingsOf(d), {
    "living_room.battery": "97 @ 2026-01-15T11:59:58.123Z",
    "living_room.humidity": "45.21 @ 2026-01-15T11:59:58.123Z",
    "living_room.temperature": "21.5 @ 2026-01-15T11:59:58.123Z",
    "living_room.voltage": "2995 @ 2026-01-15T11:59:58.123Z",
  });
  assert.equal(d.kind === "readings" && d.tenantAlias, "zigbee2mqtt");
  assert.equal(d.kind === "readings" && d.userId, "");
  assert.equal(d.kind === "readings" && d.deviceCode, "living_room");
  // A plug: text state, booleans as 1/0, epoch-ms last_seen, no time of its own otherwise.
  assert.deepEqual(
    readingsOf(run(
      z,
      "zigbee2mqtt/0x00158d0001a2b3c4",
      '{"state":"ON","power":12.3,"child_lock":"UNLOCK","contact":false}',
    )),
    {
      "0x00158d0001a2b3c4.state": "ON",
      "0x00158d0001a2b3c4.power": "12.3",
      "0x00158d0001a2b3c4.contact": "0",
    },
  );
  // A remote's bare action: nothing the rule keeps.
  assert.deepEqual(run(z, "zigbee2mqtt/remote", '{"action":"single"}'), {
    kind: "skip",
    reason: "not_mapped",
  });
});

Deno.test("zigbee2mqtt recipe: availability as JSON and as the legacy bare word", () => {
  const z = recipe("zigbee2mqtt");
  const json = run(z, "zigbee2mqtt/living_room/availability", '{"state":"online"}');
  assert.equal(json.kind, "status");
  assert.equal(json.kind === "status" && json.status, "online");
  assert.deepEqual(json.kind === "status" && json.details, { state: "online" });
  const legacy = run(z, "zigbee2mqtt/living_room/availability", "offline");
  assert.equal(legacy.kind === "status" && legacy.status, "offline");
  const bad = run(z, "zigbee2mqtt/living_room/availability", '{"state":"rebooting"}');
  assert.equal(bad.kind === "reject" && bad.reason, "bad_status");
  // The bridge's own topics match no rule (and are not subscribed).
  const bridge = run(z, "zigbee2mqtt/bridge/state", '{"state":"online"}');
  assert.equal(bridge.kind === "reject" && bridge.reason, "bad_topic");
});

Deno.test("tasmota recipe: SENSOR, STATE, stat/POWER and the LWT", () => {
  const t = recipe("tasmota");
  assert.deepEqual(
    readingsOf(run(
      t,
      "tele/tasmota_1A2B3C/SENSOR",
      '{"Time":"2026-01-15T13:00:00","ENERGY":{"TotalStartTime":"2025-11-02T10:11:12",' +
        '"Total":12.345,"Yesterday":0.512,"Today":0.101,"Period":2,"Power":45,' +
        '"ApparentPower":50,"ReactivePower":21,"Factor":0.9,"Voltage":231,"Current":0.195},' +
        '"AM2301":{"Temperature":22.1,"Humidity":45.3,"DewPoint":9.8},"TempUnit":"C"}',
    )),
    {
      "tasmota_1A2B3C.ENERGY.Total": "12.345",
      "tasmota_1A2B3C.ENERGY.Yesterday": "0.512",
      "tasmota_1A2B3C.ENERGY.Today": "0.101",
      "tasmota_1A2B3C.ENERGY.Period": "2",
      "tasmota_1A2B3C.ENERGY.Power": "45",
      "tasmota_1A2B3C.ENERGY.ApparentPower": "50",
      "tasmota_1A2B3C.ENERGY.ReactivePower": "21",
      "tasmota_1A2B3C.ENERGY.Factor": "0.9",
      "tasmota_1A2B3C.ENERGY.Voltage": "231",
      "tasmota_1A2B3C.ENERGY.Current": "0.195",
      "tasmota_1A2B3C.AM2301.Temperature": "22.1",
      "tasmota_1A2B3C.AM2301.Humidity": "45.3",
      "tasmota_1A2B3C.AM2301.DewPoint": "9.8",
    },
  );
  assert.deepEqual(
    readingsOf(run(
      t,
      "tele/tasmota_1A2B3C/STATE",
      '{"Time":"2026-01-15T13:00:00","Uptime":"0T01:02:03","UptimeSec":3723,"Heap":25,' +
        '"SleepMode":"Dynamic","Sleep":50,"LoadAvg":19,"MqttCount":1,"POWER":"ON",' +
        '"Wifi":{"AP":1,"SSId":"home","BSSId":"AA:BB:CC:DD:EE:FF","Channel":6,"Mode":"11n",' +
        '"RSSI":80,"Signal":-60,"LinkCount":1,"Downtime":"0T00:00:03"}}',
    )),
    {
      "tasmota_1A2B3C.POWER": "ON",
      "tasmota_1A2B3C.Wifi.RSSI": "80",
      "tasmota_1A2B3C.Wifi.Signal": "-60",
      "tasmota_1A2B3C.UptimeSec": "3723",
    },
  );
  assert.deepEqual(readingsOf(run(t, "stat/tasmota_1A2B3C/POWER", "OFF")), {
    "tasmota_1A2B3C.POWER": "OFF",
  });
  const lwt = run(t, "tele/tasmota_1A2B3C/LWT", "Offline");
  assert.equal(lwt.kind === "status" && lwt.status, "offline");
  assert.equal(lwt.kind === "status" && lwt.tenantAlias, "tasmota");
  assert.equal(run(t, "tele/tasmota_1A2B3C/LWT", "Online").kind, "status");
});

Deno.test("shelly-gen2 recipe: NotifyStatus with its ts, component status, events skipped, online", () => {
  const s = recipe("shelly-gen2");
  const id = "shellyplus1pm-a8032ab12345";
  assert.deepEqual(
    readingsOf(run(
      s,
      `${id}/events/rpc`,
      `{"src":"${id}","dst":"${id}/events","method":"NotifyStatus","params":{"ts":1768478390.25,` +
        '"switch:0":{"id":0,"apower":12.5,"current":0.061,"aenergy":{"by_minute":[150.3,201.1,' +
        '199.8],"minute_ts":1768478340,"total":1234.567}}}}',
    )),
    {
      [`${id}.switch:0.apower`]: "12.5 @ 2026-01-15T11:59:50.250Z",
      [`${id}.switch:0.current`]: "0.061 @ 2026-01-15T11:59:50.250Z",
      [`${id}.switch:0.aenergy.total`]: "1234.567 @ 2026-01-15T11:59:50.250Z",
    },
  );
  const event = run(
    s,
    `${id}/events/rpc`,
    `{"src":"${id}","dst":"${id}/events","method":"NotifyEvent","params":{"ts":1768478390.1,` +
      '"events":[{"component":"input:0","id":0,"event":"single_push","ts":1768478390.1}]}}',
  );
  assert.deepEqual(event, { kind: "skip", reason: "not_mapped" });
  assert.deepEqual(
    readingsOf(run(
      s,
      `${id}/status/switch:0`,
      '{"id":0,"source":"init","output":true,"apower":12.5,"voltage":231.7,"freq":50.0,' +
        '"current":0.061,"aenergy":{"total":1234.567,"by_minute":[150.3,201.1,199.8],' +
        '"minute_ts":1768478340},"temperature":{"tC":41.2,"tF":106.2}}',
    )),
    {
      [`${id}.switch:0.output`]: "1",
      [`${id}.switch:0.apower`]: "12.5",
      [`${id}.switch:0.voltage`]: "231.7",
      [`${id}.switch:0.freq`]: "50",
      [`${id}.switch:0.current`]: "0.061",
      [`${id}.switch:0.aenergy.total`]: "1234.567",
      [`${id}.switch:0.temperature.tC`]: "41.2",
    },
  );
  const offline = run(s, `${id}/online`, "false");
  assert.equal(offline.kind === "status" && offline.status, "offline");
  assert.equal(offline.kind === "status" && offline.deviceCode, id);
});

const CBOR_FILE = {
  rules: [{
    name: "cbor",
    topic: "{user_id}/{device}/cbor",
    format: "cbor",
    readings: "all",
    time: "ts",
  }, {
    name: "cbor status",
    topic: "{user_id}/{device}/cbor-status",
    format: "cbor",
    status: { path: "status" },
  }],
};

Deno.test("cbor: the same shapes as JSON, from a user_id level", () => {
  const m = compileMappings(CBOR_FILE, "cbor.json");
  const d = run(
    m,
    `${USER.toUpperCase()}/dev1/cbor`,
    encode({ temp: 21.5, env: { hum: 40, ok: true, raw: new Uint8Array([1, 2]) }, ts: 1768478390 }),
  );
  assert.deepEqual(readingsOf(d), {
    "dev1.temp": "21.5 @ 2026-01-15T11:59:50.000Z",
    "dev1.env.hum": "40 @ 2026-01-15T11:59:50.000Z",
    "dev1.env.ok": "1 @ 2026-01-15T11:59:50.000Z",
  });
  assert.equal(d.kind === "readings" && d.userId, USER);
  assert.equal(d.kind === "readings" && d.tenantAlias, undefined);
  const s = run(m, `${USER}/dev1/cbor-status`, encode({ status: "online", big: 2n ** 60n }));
  assert.equal(s.kind === "status" && s.status, "online");
  const truncated = run(m, `${USER}/dev1/cbor`, encode({ temp: [1, 2, 3] }).slice(0, 6));
  assert.equal(truncated.kind === "reject" && truncated.reason, "bad_payload");
  const badUser = run(m, "not-a-uuid/dev1/cbor", encode({ temp: 1 }));
  assert.equal(badUser.kind === "reject" && badUser.reason, "bad_user_id");
});

Deno.test("mappings keep the limits: size, entries, depth, future times, names", () => {
  const m = compileMappings(CBOR_FILE, "cbor.json");
  const json = compileMappings({
    tenant: { user_id: USER },
    rules: [{ name: "j", topic: "j/{device}", readings: "all", time: "t" }],
  }, "j.json");
  const reason = (d: Decoded) => d.kind === "reject" ? d.reason : d.kind;
  assert.equal(
    reason(run(m, `${USER}/d/cbor`, new Uint8Array(70_000), { maxPayloadBytes: 65536 })),
    "too_large",
  );
  const many = JSON.stringify(
    Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`f${i}`, i])),
  );
  assert.equal(reason(run(json, "j/d", many, { maxBulkEntries: 10 })), "too_large");
  assert.equal(reason(run(json, "j/d", "[".repeat(40) + "1" + "]".repeat(40))), "bad_payload");
  assert.equal(reason(run(json, "j/d", '{"a":1,"t":"2099-01-01T00:00:00Z"}')), "future_timestamp");
  assert.equal(reason(run(json, "j/d", '{"a":1,"t":"yesterday"}')), "bad_timestamp");
  // A key that cannot be a feed key is rejected; its neighbours are kept.
  const d = run(json, "j/d", '{"a/b":1,"__proto__":2,"constructor":{"x":3}}');
  assert.deepEqual(readingsOf(d), { "d.__proto__": "2", "d.constructor.x": "3" });
  assert.equal(d.kind === "readings" && d.rejects[0].reason, "bad_payload");
  assert.equal(reason(run(json, "j/" + "x".repeat(200), '{"a":1}')), "bad_topic");
  assert.equal(run(json, "j/d", "").kind, "skip");
});

/** The error line a file is refused with. */
function refusal(file: unknown): string {
  try {
    compileMappings(file, "m.json");
  } catch (error) {
    return (error as Error).message;
  }
  return "accepted";
}

Deno.test("a wrong mappings file is refused with one line naming the rule and the field", () => {
  const rule = { name: "r", topic: "a/{device}", tenant: { user_id: USER }, readings: "all" };
  assert.equal(
    refusal({}),
    "mappings m.json: rules: Invalid input: expected array, received undefined",
  );
  assert.equal(
    refusal({ rules: [rule, { ...rule, name: "s", readings: 5 }] }),
    'mappings m.json: rule 2 ("s"): readings: "all", a list of paths, or an object of names to paths',
  );
  assert.equal(
    refusal({ rules: [{ ...rule, format: "protobuf" }] }),
    'mappings m.json: rule 1 ("r"): format: one of json, raw, cbor, sparkplug',
  );
  assert.equal(
    refusal({ rules: [{ ...rule, format: "sparkplug" }] }),
    'mappings m.json: rule 1 ("r"): readings: not for format sparkplug, which maps its payload ' +
      "itself",
  );
  assert.equal(
    refusal({ rules: [{ ...rule, feed_key: "{device}.{nope}" }] }),
    'mappings m.json: rule 1 ("r"): feed_key: {nope} is not a named level of the topic nor {path}',
  );
  assert.equal(
    refusal({ rules: [{ ...rule, tenant: undefined }] }),
    'mappings m.json: rule 1 ("r"): tenant: needed here or at the top of the file: ' +
      '{"user_id": ...} or {"alias": ...}',
  );
  assert.equal(
    refusal({ rules: [{ ...rule, topic: "a/#" }] }),
    'mappings m.json: rule 1 ("r"): topic: level "#" must be a plain word, a {name} or + ' +
      "(no #, no empty level)",
  );
  assert.equal(
    refusal({ rules: [{ ...rule, status: {} }] }),
    'mappings m.json: rule 1 ("r"): readings: a rule needs either "readings" or "status"',
  );
  assert.equal(
    refusal({ rules: [{ ...rule, extra: 1 }] }),
    'mappings m.json: rule 1 ("r"): Unrecognized key: "extra"',
  );
  assert.equal(
    refusal({ rules: [rule, { ...rule, name: "s", topic: "+/{device}" }] }),
    'mappings m.json: rules "r" and "s" both match topics like "a/x"; make one of them more ' +
      "specific (a literal level where the other has a {name})",
  );
});

Deno.test("50 rules: each topic finds its own rule, and one lookup per level", () => {
  const rules = Array.from({ length: 50 }, (_, i) => ({
    name: `r${i}`,
    topic: i % 2 === 0 ? `site${i}/{device}/tele` : `dev/{device}/kind${i}/{part}`,
    tenant: { user_id: USER },
    readings: ["v"],
    ...(i % 2 === 0 ? {} : { feed_key: "{device}.{part}" }),
  }));
  const m = compileMappings({ rules }, "50.json");
  for (let i = 0; i < 50; i++) {
    const topic = i % 2 === 0 ? `site${i}/d${i}/tele` : `dev/d${i}/kind${i}/p`;
    const d = run(m, topic, '{"v": 1}');
    const expected = i % 2 === 0 ? `d${i}.v` : `d${i}.p`;
    assert.deepEqual(readingsOf(d), { [expected]: "1" }, topic);
  }
  assert.equal(run(m, "site0/d/other", '{"v":1}').kind, "reject");
  assert.ok(m.matcherStates < 200, `${m.matcherStates} states`);
});

Deno.test("sparkplug-b recipe: a Sparkplug message by rule, its tenant the alias, for the processor to resolve", () => {
  const s = recipe("sparkplug-b");
  const d = run(
    s,
    "spBv1.0/plant/DDATA/edge-1/pump-7",
    encodeSparkplug({
      timestamp: 1768478390000,
      seq: 4,
      metrics: [{ alias: 1, value: 7, datatype: 3 }],
    }),
  );
  assert.equal(d.kind, "sparkplug", JSON.stringify(d));
  assert.equal(d.kind === "sparkplug" && d.tenantAlias, "sparkplug");
  assert.equal(d.kind === "sparkplug" && d.userId, "");
  assert.equal(d.kind === "sparkplug" && d.deviceCode, "plant.edge-1.pump-7");
  assert.deepEqual(s.filters.slice(0, 2), ["spBv1.0/+/NBIRTH/+", "spBv1.0/+/NDATA/+"]);
});

/**
 * The plan of a batch, without a database: every rule that sorts a message or a reading
 * into a value row, a status event, a reject or a skip, the stamps of value rows, and the
 * keys (built once per message, gathered once per feed and device).
 */
import assert from "node:assert/strict";
import type { Decoded, DecodedMessage, Inbound, Reading } from "../../core/message.ts";
import { decode } from "../../core/decode.ts";
import { compileTopics } from "../../core/topics.ts";
import { deviceKeyOf } from "../device_cache.ts";
import { type FeedInfo, feedKeyOf } from "../feed_cache.ts";
import { aliasesOf, type Found, keysOf, planBatch, type PlanRules, withTenants } from "./plan.ts";

const U = "7d9f4a7e-1c2b-4e3f-8a9b-0c1d2e3f4a5b";
const V = "7d9f4a7e-1c2b-4e3f-8a9b-0c1d2e3f4a5c";
const OPEN: PlanRules = { requireDevice: false, autoRegister: false };
const STRICT: PlanRules = { requireDevice: true, autoRegister: false };

let clock = 1_700_000_000_000_000;

function pending(decoded: Decoded, extra: Partial<Inbound> = {}): DecodedMessage {
  const inbound: Inbound = {
    topic: "t",
    payload: new Uint8Array(),
    qos: 1,
    retain: false,
    receivedAtUs: ++clock,
    ...extra,
  };
  return { inbound, decoded };
}

function reading(feedKey: string, value: number | null, more: Partial<Reading> = {}): Reading {
  return { feedKey, value, text: null, tsUs: null, ...more };
}

type ReadingsMessage = Extract<Decoded, { kind: "readings" }>;
type StatusMessage = Extract<Decoded, { kind: "status" }>;

function readings(device: string, rs: Reading[], userId = U): ReadingsMessage {
  return { kind: "readings", userId, deviceCode: device, readings: rs, rejects: [] };
}

function status(
  device: string,
  word: "online" | "offline",
  tsUs: number | null = null,
): StatusMessage {
  return { kind: "status", userId: U, deviceCode: device, status: word, details: null, tsUs };
}

function feed(id: number, more: Partial<FeedInfo> = {}): FeedInfo {
  return { id, isActive: true, thresholdMin: null, thresholdMax: null, ...more };
}

/** `found` from feed keys and device codes of user U. */
function found(feeds: Record<string, FeedInfo>, devices: Record<string, number> = {}): Found {
  return {
    feeds: new Map(Object.entries(feeds).map(([k, f]) => [feedKeyOf(U, k), f])),
    devices: new Map(Object.entries(devices).map(([c, id]) => [deviceKeyOf(U, c), id])),
  };
}

function plan(batch: DecodedMessage[], answers: Found, rules = OPEN) {
  return planBatch(batch, keysOf(batch, rules), answers, rules);
}

Deno.test("keysOf() builds each message's keys once and gathers each feed and device once", () => {
  const batch = [
    pending(readings("d1", [reading("temp", 1), reading("hum", 2)])),
    pending(readings("d2", [reading("temp", 3)])),
    pending(status("d1", "online")),
    pending({ kind: "reject", reason: "bad_topic", detail: "x" }),
    pending({ kind: "skip", reason: "retained_cleared" }),
    pending(readings("d1", [reading("temp", 4)], V)),
  ];
  const open = keysOf(batch, OPEN);
  assert.deepEqual(open.messages, [
    { device: null, feeds: [feedKeyOf(U, "temp"), feedKeyOf(U, "hum")] },
    { device: null, feeds: [feedKeyOf(U, "temp")] },
    { device: deviceKeyOf(U, "d1"), feeds: [] },
    null,
    null,
    { device: null, feeds: [feedKeyOf(V, "temp")] },
  ]);
  assert.deepEqual([...open.feeds.keys()], [
    feedKeyOf(U, "temp"),
    feedKeyOf(U, "hum"),
    feedKeyOf(V, "temp"),
  ]);
  // Without a rule that needs them, the devices of readings are not keyed or looked up.
  assert.deepEqual([...open.devices.entries()], [
    [deviceKeyOf(U, "d1"), { userId: U, deviceCode: "d1", hasStatus: true }],
  ]);
  // Auto-register attaches a feed to the device of the last message naming it.
  assert.equal(open.feeds.get(feedKeyOf(U, "temp"))!.deviceCode, "d2");

  const strict = keysOf(batch, STRICT);
  assert.equal(strict.messages[0]!.device, deviceKeyOf(U, "d1"));
  assert.deepEqual([...strict.devices.values()], [
    { userId: U, deviceCode: "d1", hasStatus: true },
    { userId: U, deviceCode: "d2", hasStatus: false },
    { userId: V, deviceCode: "d1", hasStatus: false },
  ]);
  assert.equal(keysOf(batch, { requireDevice: false, autoRegister: true }).devices.size, 3);
});

Deno.test("decoded rejects and skips pass through, named by their message", () => {
  const p = plan([
    pending({ kind: "reject", reason: "bad_payload", detail: "not a number" }),
    pending({ kind: "skip", reason: "retained_cleared" }),
    pending({ kind: "skip", reason: "retained_cleared" }),
  ], found({}));
  assert.deepEqual(p.rejects, [{ message: 0, reason: "bad_payload", detail: "not a number" }]);
  assert.deepEqual(p.skipped, { retained_cleared: 2 });
  assert.deepEqual([p.values, p.statuses, p.retained.size], [[], [], 0]);
});

Deno.test("a reading of a feed that was not found is rejected as unknown_feed", () => {
  const p = plan(
    [pending(readings("d1", [reading("temp", 1), reading("nope", 2)]))],
    found({ temp: feed(1) }),
  );
  assert.deepEqual(p.rejects, [
    { message: 0, reason: "unknown_feed", detail: 'no feed "nope" for this user' },
  ]);
  assert.deepEqual(p.values.map((v) => v.feedKey), ["temp"]);
});

Deno.test("a reading of an inactive feed is skipped, not rejected", () => {
  const p = plan(
    [pending(readings("d1", [reading("temp", 1)]))],
    found({ temp: feed(1, { isActive: false }) }),
  );
  assert.deepEqual(p.skipped, { inactive_feed: 1 });
  assert.deepEqual([p.values, p.rejects], [[], []]);
});

Deno.test("a retained reading without a time of its own is skipped; with one, it is stored", () => {
  const p = plan([
    pending(readings("d1", [reading("temp", 1)]), { retain: true }),
    pending(readings("d1", [reading("temp", 2, { tsUs: 1_000 })]), { retain: true }),
  ], found({ temp: feed(1) }));
  assert.deepEqual(p.skipped, { retained: 1 });
  assert.deepEqual(p.values.map((v) => [v.value, v.message]), [[2, 1]]);
});

Deno.test("a number outside the feed's thresholds is out_of_range; the bounds themselves and texts are in", () => {
  const answers = found({
    both: feed(1, { thresholdMin: 0, thresholdMax: 10 }),
    low: feed(2, { thresholdMin: 0 }),
    high: feed(3, { thresholdMax: 10 }),
  });
  const p = plan([
    pending(readings("d1", [
      reading("both", 0),
      reading("both", 10),
      reading("both", -0.5),
      reading("low", -1),
      reading("high", 11),
      reading("both", null, { text: "ON" }),
    ])),
  ], answers);
  assert.deepEqual(p.rejects.map((r) => [r.reason, r.detail]), [
    ["out_of_range", "both: -0.5 outside [0, 10]"],
    ["out_of_range", "low: -1 outside [0, inf]"],
    ["out_of_range", "high: 11 outside [-inf, 10]"],
  ]);
  assert.deepEqual(p.values.map((v) => v.value ?? v.text), [0, 10, "ON"]);
});

Deno.test("threshold mode alert: a number out of range is stored (the alert rules judge it); a silence watch alone changes nothing", () => {
  const rules = { hysteresis: 0, minDurationUs: 0 };
  const answers = found({
    alerting: feed(1, {
      thresholdMax: 10,
      alerts: { ...rules, alertMode: true, watchesSilence: false },
    }),
    watched: feed(2, {
      thresholdMax: 10,
      alerts: { ...rules, alertMode: false, watchesSilence: true },
    }),
  });
  const p = plan([
    pending(readings("d1", [reading("alerting", 99), reading("watched", 99)])),
  ], answers);
  assert.deepEqual(p.values.map((v) => [v.feedKey, v.value]), [["alerting", 99]]);
  assert.deepEqual(p.rejects.map((r) => r.detail), ["watched: 99 outside [-inf, 10]"]);
});

Deno.test("a reading of a feed with a max_silence is marked watched (its last value is updated in place); others are not", () => {
  const rules = { hysteresis: 0, minDurationUs: 0, alertMode: false };
  const answers = found({
    plain: feed(1),
    watched: feed(2, { alerts: { ...rules, watchesSilence: true } }),
    alerting: feed(3, { alerts: { ...rules, alertMode: true, watchesSilence: false } }),
  });
  const p = plan([
    pending(readings("d1", [reading("plain", 1), reading("watched", 2), reading("alerting", 3)])),
  ], answers);
  assert.deepEqual(p.values.map((v) => [v.feedKey, v.watched]), [
    ["plain", false],
    ["watched", true],
    ["alerting", false],
  ]);
});

Deno.test("with requireDevice, readings of an unregistered device are one unknown_device reject per message", () => {
  const bulk = readings("ghost", [reading("temp", 1), reading("nope", 2)]);
  bulk.rejects.push({ reason: "bad_payload", detail: "entry 3" });
  const batch = [pending(bulk), pending(readings("d1", [reading("temp", 3)]))];
  const answers = found({ temp: feed(1) }, { d1: 5 });
  const strict = plan(batch, answers, STRICT);
  assert.deepEqual(strict.rejects, [
    { message: 0, reason: "unknown_device", detail: 'no device "ghost" for this user' },
  ]);
  assert.deepEqual(strict.values.map((v) => v.value), [3]);
  // Without the rule, the same readings need only their feeds.
  const open = plan(batch, answers, OPEN);
  assert.deepEqual(open.rejects.map((r) => r.reason), ["bad_payload", "unknown_feed"]);
  assert.deepEqual(open.values.map((v) => v.value), [1, 3]);
});

Deno.test("a value row is stamped with its own time, else its receive time plus its offset, and carries what a conflict reports", () => {
  const batch = [
    pending(readings("d1", [
      reading("temp", 1, { tsUs: 42 }),
      reading("temp", 2),
      reading("temp", 3, { receiveOffsetUs: 1 }),
      reading("temp", 4, { receiveOffsetUs: 2 }),
    ])),
  ];
  const at = batch[0].inbound.receivedAtUs;
  const p = plan(batch, found({ temp: feed(9) }));
  const row = {
    feedId: 9,
    feedKey: "temp",
    text: null,
    receivedUs: at,
    message: 0,
    watched: false,
  };
  assert.deepEqual(p.values, [
    { ...row, value: 1, createdUs: 42 },
    { ...row, value: 2, createdUs: at },
    {
      feedId: 9,
      feedKey: "temp",
      value: 3,
      text: null,
      createdUs: at + 1,
      receivedUs: at,
      message: 0,
      watched: false,
    },
    {
      feedId: 9,
      feedKey: "temp",
      value: 4,
      text: null,
      createdUs: at + 2,
      receivedUs: at,
      message: 0,
      watched: false,
    },
  ]);
});

Deno.test("a many-feeds message's repeated untimed feeds get keys of their own, as decoded", () => {
  const inbound: Inbound = {
    topic: `${U}/d1/feeds`,
    payload: new TextEncoder().encode(
      '[{"feed": "temp", "value": 1}, {"feed": "temp", "value": 2}, {"feed": "hum", "value": 3}]',
    ),
    qos: 1,
    retain: false,
    receivedAtUs: ++clock,
  };
  const decoded = decode(inbound, {
    router: compileTopics(),
    maxPayloadBytes: 65536,
    maxTextLength: 255,
    maxFutureSkewMs: 300_000,
  });
  const p = plan([{ inbound, decoded }], found({ temp: feed(1), hum: feed(2) }));
  const keys = p.values.map((v) => `${v.feedId}@${v.createdUs - inbound.receivedAtUs}`);
  assert.equal(new Set(keys).size, 3, `distinct keys: ${keys}`);
});

Deno.test("a status of an unregistered device is unknown_device, whatever the rules", () => {
  const p = plan([pending(status("ghost", "online"))], found({}, { d1: 5 }));
  assert.deepEqual(p.rejects, [
    { message: 0, reason: "unknown_device", detail: 'no device "ghost" for this user' },
  ]);
});

Deno.test("a status is an event at its own time, else at its receive time, with its details as JSON", () => {
  const withDetails: StatusMessage = { ...status("d1", "offline"), details: { battery: 3 } };
  const batch = [pending(status("d1", "online", 7)), pending(withDetails)];
  const p = plan(batch, found({}, { d1: 5 }));
  assert.deepEqual(p.statuses, [
    { deviceId: 5, status: "online", payload: null, atUs: 7, message: 0 },
    {
      deviceId: 5,
      status: "offline",
      payload: '{"battery":3}',
      atUs: batch[1].inbound.receivedAtUs,
      message: 1,
    },
  ]);
});

Deno.test("a retained status without a time is skipped and kept, the last per device, for a device with none", () => {
  const batch = [
    pending(status("d1", "online"), { retain: true }),
    pending(status("d1", "offline"), { retain: true }),
    pending(status("d2", "online", 9), { retain: true }),
  ];
  const p = plan(batch, found({}, { d1: 5, d2: 6 }));
  assert.deepEqual(p.skipped, { retained: 2 });
  assert.deepEqual([...p.retained], [[5, {
    status: "offline",
    atUs: batch[1].inbound.receivedAtUs,
  }]]);
  assert.deepEqual(p.statuses.map((s) => s.deviceId), [6]);
});

Deno.test("rejects come in batch order: a bulk message's bad entries before its readings' rejects", () => {
  const bulk = readings("d1", [reading("nope", 1)]);
  bulk.rejects.push({ reason: "bad_timestamp", detail: "entry 2" });
  const p = plan([
    pending(status("ghost", "online")),
    pending(bulk),
    pending({ kind: "reject", reason: "too_large", detail: "big" }),
  ], found({}));
  assert.deepEqual(p.rejects.map((r) => [r.message, r.reason]), [
    [0, "unknown_device"],
    [1, "bad_timestamp"],
    [1, "unknown_feed"],
    [2, "too_large"],
  ]);
});

Deno.test("a message named by a tenant alias is keyed by its user; an unknown alias is unknown_tenant", () => {
  const byAlias = (alias: string, feed: string): ReadingsMessage => ({
    ...readings("d1", [reading(feed, 1)], ""),
    tenantAlias: alias,
  });
  const statusOf: StatusMessage = { ...status("d1", "online"), userId: "", tenantAlias: "home" };
  const batch = [
    pending(byAlias("home", "temp")),
    pending(byAlias("away", "temp")),
    pending(statusOf),
  ];
  assert.deepEqual([...aliasesOf(batch)], ["home", "away"]);
  const owned = withTenants(batch, new Map([["home", U]]));
  assert.equal(
    batch[0].decoded.kind === "readings" && batch[0].decoded.userId,
    "",
    "left as decoded",
  );
  const keys = keysOf(owned, STRICT);
  assert.deepEqual(keys.messages[0], {
    device: deviceKeyOf(U, "d1"),
    feeds: [feedKeyOf(U, "temp")],
  });
  assert.equal(keys.messages[1], null);
  const p = planBatch(owned, keys, found({ temp: feed(7) }, { d1: 3 }), STRICT);
  assert.deepEqual(p.values.map((v) => [v.message, v.feedId]), [[0, 7]]);
  assert.deepEqual(p.statuses.map((s) => [s.message, s.deviceId]), [[2, 3]]);
  assert.deepEqual(p.rejects.map((r) => [r.message, r.reason]), [[1, "unknown_tenant"]]);
  assert.match(p.rejects[0].detail, /no tenant alias "away"/);
  const plain = [pending(readings("d1", [reading("temp", 1)]))];
  assert.equal(withTenants(plain, new Map()), plain, "no alias: the batch itself");
});

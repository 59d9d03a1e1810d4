/**
 * Each `simulate --format` speaks what its recipe in deploy/mappings/ reads: every message
 * decodes into readings of exactly the feeds the fleet registers, with the values the
 * models drew, and the status words into online and offline.
 */
import assert from "node:assert/strict";
import { SIM_FORMAT_NAMES } from "../cli/simulate_options.ts";
import { compileMappings } from "../core/mappings/decode_mapped.ts";
import { decode } from "../core/decode.ts";
import { compileTopics } from "../core/topics.ts";
import { buildFleet } from "./fleet.ts";
import { createFormatTraffic, fleetInFormat, SIM_FORMATS } from "./formats.ts";
import { createRng } from "./prng.ts";

const T0 = Date.UTC(2026, 0, 15) * 1000;

Deno.test("--format lists feedline, sparkplug (an engine of its own) and every format of SIM_FORMATS", () => {
  assert.deepEqual([...SIM_FORMAT_NAMES], ["feedline", "sparkplug", ...Object.keys(SIM_FORMATS)]);
});

for (const [name, format] of Object.entries(SIM_FORMATS)) {
  Deno.test(`--format ${name}: what it publishes is what ${format.recipe} reads`, () => {
    const url = new URL(`../../${format.recipe}`, import.meta.url);
    const mappings = compileMappings(JSON.parse(Deno.readTextFileSync(url)), format.recipe);
    const opts = {
      router: compileTopics(),
      mappings,
      maxPayloadBytes: 65536,
      maxTextLength: 255,
      maxFutureSkewMs: 300_000,
    };
    const fleet = fleetInFormat(
      buildFleet({ seed: 3, users: 2, devicesPerUser: 3, feedsPerDevice: 5 }),
      format,
      createRng(3, 4),
    );
    const registered = new Set(fleet.devices.flatMap((d) => d.feeds.map((f) => f.key)));
    const traffic = createFormatTraffic(3, fleet, format);
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const msg = traffic.next(T0 + i * 1000);
      const payload = typeof msg.payload === "string"
        ? new TextEncoder().encode(msg.payload)
        : msg.payload;
      const d = decode({
        topic: msg.topic,
        payload,
        qos: 1,
        retain: false,
        receivedAtUs: T0 + i * 1000,
      }, opts);
      assert.equal(d.kind, "readings", `${msg.topic}: ${JSON.stringify(d)}`);
      if (d.kind !== "readings") continue;
      assert.equal(d.readings.length, msg.readings, msg.topic);
      assert.deepEqual(d.rejects, []);
      assert.equal(d.deviceCode, fleet.devices[msg.device].code);
      for (const r of d.readings) {
        assert.ok(registered.has(r.feedKey), `${r.feedKey} is registered`);
        seen.add(r.feedKey);
      }
      assert.equal(d.tenantAlias, format.alias ?? undefined);
      if (!format.alias) assert.equal(d.userId, fleet.devices[msg.device].userId);
    }
    assert.ok(seen.size >= registered.size * 0.8, `${seen.size} of ${registered.size} feeds seen`);
    const device = fleet.devices[0];
    for (const word of ["online", "offline"] as const) {
      const s = decode({
        topic: format.statusTopic(device),
        payload: new TextEncoder().encode(format[word]),
        qos: 1,
        retain: false,
        receivedAtUs: T0,
      }, opts);
      assert.equal(s.kind === "status" && s.status, word);
    }
  });
}

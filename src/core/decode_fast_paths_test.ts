import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { decode, type DecodeOptions, isUuid } from "./decode.ts";
import type { Inbound } from "./message.ts";
import { decodeUtf8 } from "./payload.ts";
import { compileTopics } from "./topics.ts";

const opts: DecodeOptions = {
  router: compileTopics(),
  maxPayloadBytes: 65536,
  maxTextLength: 255,
  maxFutureSkewMs: 300_000,
};

function inbound(topic: string, payload: Uint8Array): Inbound {
  return { topic, payload, qos: 1, retain: false, receivedAtUs: Date.now() * 1000 };
}

Deno.test("isUuid() accepts 8-4-4-4-12 hex in either case and nothing else", () => {
  assert.equal(isUuid("6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"), true);
  assert.equal(isUuid("6F1C2D3E-4A5B-4C6D-8E9F-0A1B2C3D4E5F"), true);
  assert.equal(isUuid("6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5"), false);
  assert.equal(isUuid("6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5g"), false);
  assert.equal(isUuid("6f1c2d3e4a5b-4c6d-8e9f-0a1b2c3d4e5f0"), false);
  assert.equal(isUuid("6f1c2d3e-4a5b-4c6d-8e9f_0a1b2c3d4e5f"), false);
  assert.equal(isUuid(""), false);
});

Deno.test("decodeUtf8() gives the same text on the ASCII fast path and the decoder path", () => {
  const enc = new TextEncoder();
  for (const text of ["23.5", '{"value":1,"ts":1767225600}', "ON", "", "x".repeat(64)]) {
    assert.equal(decodeUtf8(enc.encode(text)), text);
    assert.equal(decodeUtf8(Buffer.from(text)), text);
  }
  assert.equal(decodeUtf8(enc.encode("21,5 °C")), "21,5 °C");
  assert.equal(decodeUtf8(enc.encode("y".repeat(100))), "y".repeat(100));
});

Deno.test("decodeUtf8() still refuses bytes that are not UTF-8", () => {
  assert.equal(decodeUtf8(new Uint8Array([0x32, 0xff, 0x33])), null);
  assert.equal(decodeUtf8(new Uint8Array([0xc3])), null);
});

Deno.test("decode() of single-feed messages shares no mutable state between messages", () => {
  const topic = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f/dev1/feeds/temp";
  const a = decode(inbound(topic, Buffer.from("1")), opts);
  const b = decode(inbound(topic, Buffer.from("2")), opts);
  assert.ok(a.kind === "readings" && b.kind === "readings");
  assert.equal(a.readings[0].value, 1);
  assert.equal(b.readings[0].value, 2);
  assert.deepEqual(a.rejects, []);
  assert.throws(() => (a.rejects as unknown[]).push(1), TypeError);
});

Deno.test("decode() rejects a user id that is not a UUID as bad_user_id", () => {
  const d = decode(inbound("not-a-uuid/dev1/feeds/temp", Buffer.from("1")), opts);
  assert.equal(d.kind === "reject" && d.reason, "bad_user_id");
});

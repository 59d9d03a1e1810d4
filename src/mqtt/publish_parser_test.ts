/**
 * `PublishParser` against mqtt-packet's own parser (src/mqtt/publish_parser.ts): the same
 * stream of bytes, cut into chunks anywhere, gives the same packets and errors, in the
 * same order, for MQTT 3.1.1 and 5: PUBLISH of every QoS with and without properties,
 * the other packets MQTT.js receives, and broken bytes. Seeded (FEEDLINE_PROPERTY_SEED);
 * fast-check prints the counterexample on failure.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fc from "fast-check";
import mqttPacket from "mqtt-packet";
import { createHash } from "node:crypto";
import { type OversizeSettings, PublishParser } from "./publish_parser.ts";

const SEED = Number(Deno.env.get("FEEDLINE_PROPERTY_SEED") || 2626);

type Version = 4 | 5;
interface Parser {
  on(event: string, listener: (x: unknown) => void): unknown;
  parse(buf: Buffer): number;
}

const originalParser = (mqttPacket as unknown as { parser(o: object): Parser }).parser;
const generate = (mqttPacket as unknown as { generate(p: object, o: object): Buffer }).generate;

/** What a parser emitted for `chunks`: packets as plain objects, errors by message. */
function run(parser: Parser, chunks: Buffer[]): unknown[] {
  const out: unknown[] = [];
  parser.on("packet", (p) => {
    const packet = p as Record<string, unknown>;
    out.push({
      class: (packet.constructor as { name: string }).name,
      ...packet,
      payloadIsBuffer: packet.payload == null ? null : Buffer.isBuffer(packet.payload),
      payload: packet.payload == null ? packet.payload : Buffer.from(packet.payload as Buffer),
    });
  });
  parser.on("error", (e) => out.push({ error: (e as Error).message }));
  for (const c of chunks) parser.parse(c);
  return out;
}

/** `stream` cut at `cuts` (each taken modulo its length), as chunks of their own. */
function cut(stream: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const p of [...points, stream.length]) {
    if (p > from) chunks.push(Buffer.from(stream.subarray(from, p)));
    from = p;
  }
  return chunks;
}

function compare(version: Version, stream: Buffer, cuts: number[]): void {
  const chunks = cut(stream, cuts);
  const expected = run(originalParser({ protocolVersion: version }), chunks);
  const actual = run(new PublishParser({ protocolVersion: version }), chunks);
  assert.deepStrictEqual(actual, expected);
}

const topic = fc.oneof(
  fc.constantFrom("u/1f0e/d/t", "", "a/b/c"),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 20 }),
);
const payload = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));

const publish = (version: Version) =>
  fc.record({
    cmd: fc.constant("publish"),
    topic,
    payload,
    qos: fc.constantFrom(0, 1, 2),
    dup: fc.boolean(),
    retain: fc.boolean(),
    messageId: fc.integer({ min: 1, max: 65535 }),
    properties: version === 5
      ? fc.option(
        fc.record({
          payloadFormatIndicator: fc.boolean(),
          messageExpiryInterval: fc.integer({ min: 0, max: 100000 }),
          contentType: fc.string({ maxLength: 10 }),
          userProperties: fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 })),
        }, { requiredKeys: [] }),
        { nil: undefined },
      )
      : fc.constant(undefined),
  });

const other = (version: Version) =>
  fc.oneof(
    fc.record({
      cmd: fc.constantFrom("puback", "pubrec", "pubrel", "pubcomp"),
      messageId: fc.integer({ min: 1, max: 65535 }),
    }),
    fc.record({ cmd: fc.constantFrom("pingresp", "pingreq") }),
    fc.record({
      cmd: fc.constant("suback"),
      messageId: fc.integer({ min: 1, max: 65535 }),
      granted: fc.array(fc.constantFrom(0, 1, 2, 128), { minLength: 1, maxLength: 4 }),
    }),
    fc.record({ cmd: fc.constant("connack"), sessionPresent: fc.boolean() }).map((p) =>
      version === 5 ? { ...p, reasonCode: 0 } : { ...p, returnCode: 0 }
    ),
  );

/** A packet as bytes, or random bytes (garbage, a truncated packet). */
const piece = (version: Version) =>
  fc.oneof(
    { weight: 6, arbitrary: publish(version) },
    { weight: 2, arbitrary: other(version) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 12 }) },
  ).map((p) =>
    p instanceof Uint8Array ? Buffer.from(p) : (() => {
      try {
        return generate(p, { protocolVersion: version });
      } catch {
        return Buffer.alloc(0); // a packet the generator refuses (e.g. a v5-only field)
      }
    })()
  );

for (const version of [4, 5] as const) {
  Deno.test(`MQTT ${version}: the same packets and errors as mqtt-packet's parser`, () => {
    fc.assert(
      fc.property(
        fc.array(piece(version), { minLength: 1, maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (pieces, cuts) => compare(version, Buffer.concat(pieces), cuts),
      ),
      { seed: SEED, numRuns: 400 },
    );
  });

  Deno.test(`MQTT ${version}: well-formed packets only, cut anywhere`, () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(publish(version), other(version)), { minLength: 1, maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (packets, cuts) => {
          const bytes = Buffer.concat(
            packets.map((p) => generate(p, { protocolVersion: version })),
          );
          compare(version, bytes, cuts);
        },
      ),
      { seed: SEED, numRuns: 400 },
    );
  });
}

Deno.test("a PUBLISH of 200 KB over many chunks: one packet, the payload whole", () => {
  const big = Buffer.alloc(200_000, 7);
  const bytes = generate({ cmd: "publish", topic: "t", payload: big, qos: 1, messageId: 9 }, {
    protocolVersion: 5,
  });
  const cuts = Array.from({ length: 40 }, (_, i) => i * 5_003 + 1);
  compare(5, Buffer.concat([bytes, bytes]), cuts);
});

Deno.test("a PUBLISH is read without mqtt-packet's parser; its payload is a view", () => {
  const parser = new PublishParser({ protocolVersion: 5 });
  const packets: Record<string, unknown>[] = [];
  parser.on("packet", (p) => packets.push(p));
  const chunk = generate(
    { cmd: "publish", topic: "u/x", payload: Buffer.from("21.5"), qos: 1, messageId: 3 },
    { protocolVersion: 5 },
  );
  parser.parse(chunk);
  assert.equal(packets.length, 1);
  assert.equal((packets[0].payload as Buffer).buffer, chunk.buffer, "not copied");
});

/**
 * mqtt-packet's packets as serve's parser gives them with `oversize`: a PUBLISH whose
 * payload is over `above` bytes keeps its first `keep`, with the whole payload's size and
 * SHA-256 beside. After an error mqtt-packet's parser reads the rest of the connection as
 * it is (MQTT.js closes it anyway): nothing is cut from then on.
 */
function truncated(out: unknown[], oversize: OversizeSettings): unknown[] {
  let broken = false;
  return out.map((x) => {
    const p = x as Record<string, unknown>;
    if (p.error !== undefined) broken = true;
    if (broken || p.cmd !== "publish" || (p.payload as Buffer).length <= oversize.above) return p;
    const payload = p.payload as Buffer;
    return {
      ...p,
      payload: Buffer.from(payload.subarray(0, oversize.keep)),
      payloadSize: payload.length,
      payloadDigest: createHash("sha256").update(payload).digest("hex"),
    };
  });
}

function compareOversize(
  version: Version,
  stream: Buffer,
  cuts: number[],
  oversize: OversizeSettings,
): void {
  const chunks = cut(stream, cuts);
  const expected = truncated(run(originalParser({ protocolVersion: version }), chunks), oversize);
  const actual = run(new PublishParser({ protocolVersion: version, oversize }), chunks);
  assert.deepStrictEqual(actual, expected);
}

const oversize = fc.record({ above: fc.nat({ max: 120 }), keep: fc.nat({ max: 60 }) });

for (const version of [4, 5] as const) {
  Deno.test(`MQTT ${version}, oversize: payloads over the limit keep their head, size and digest`, () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(publish(version), other(version)), { minLength: 1, maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        oversize,
        (packets, cuts, limits) => {
          const bytes = Buffer.concat(
            packets.map((p) => generate(p, { protocolVersion: version })),
          );
          compareOversize(version, bytes, cuts, limits);
        },
      ),
      { seed: SEED, numRuns: 400 },
    );
  });

  Deno.test(`MQTT ${version}, oversize: broken bytes give the same errors`, () => {
    fc.assert(
      fc.property(
        fc.array(piece(version), { minLength: 1, maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        oversize,
        (pieces, cuts, limits) => compareOversize(version, Buffer.concat(pieces), cuts, limits),
      ),
      { seed: SEED, numRuns: 400 },
    );
  });
}

Deno.test("an oversized PUBLISH of 1 MB in 64 KB chunks: nothing of it kept but its head", () => {
  const big = Buffer.alloc(1_000_000, 7);
  big.write('{"value": 1', 0);
  const bytes = generate({ cmd: "publish", topic: "u/d/f", payload: big, qos: 1, messageId: 9 }, {
    protocolVersion: 5,
  });
  const cuts = Array.from({ length: 16 }, (_, i) => (i + 1) * 65_536);
  compareOversize(5, Buffer.concat([bytes, bytes]), cuts, { above: 65_536, keep: 1024 });
  const parser = new PublishParser({ protocolVersion: 5, oversize: { above: 65_536, keep: 1024 } });
  const packets: Record<string, unknown>[] = [];
  parser.on("packet", (p) => packets.push(p));
  for (const c of cut(bytes, cuts)) parser.parse(c);
  const payload = packets[0].payload as Buffer;
  assert.equal(payload.length, 1024);
  assert.ok(payload.buffer.byteLength < 2048, "its own small buffer, not a view of a chunk");
  assert.equal(packets[0].payloadSize, 1_000_000);
});

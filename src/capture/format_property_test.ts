/**
 * The capture-line parsers never throw and never hang (issue 12, "hardened parsing"):
 * whatever a line holds, `parseCaptureLine` and `parseMosquittoLine` answer with a
 * message or a named error, and a message they accept round-trips through the encoder.
 * Seeded (FEEDLINE_PROPERTY_SEED); fast-check prints the counterexample on failure.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { encodeCaptureLine, parseCaptureLine, parseMosquittoLine } from "./format.ts";

const SEED = Number(Deno.env.get("FEEDLINE_PROPERTY_SEED") || 1010);

/** Lines that look like captures: JSON objects with odd, missing and hostile fields. */
const captureLike = fc.record({
  topic: fc.oneof(fc.string(), fc.string({ unit: "binary", maxLength: 300 }), fc.constant(null)),
  payload: fc.oneof(fc.string({ unit: "binary" }), fc.integer(), fc.constant(undefined)),
  payload_b64: fc.oneof(fc.base64String(), fc.string(), fc.constant(undefined)),
  qos: fc.oneof(fc.integer({ min: -2, max: 4 }), fc.string(), fc.constant(undefined)),
  retain: fc.oneof(fc.boolean(), fc.string(), fc.constant(undefined)),
  received_at: fc.oneof(
    fc.date({ min: new Date(-8.64e15), max: new Date(8.64e15), noInvalidDate: true })
      .map((d) => d.toISOString()),
    fc.string(),
    fc.double(),
    fc.constant("2026-02-30T00:00:00.000000Z"),
    fc.constant(undefined),
  ),
}, { requiredKeys: [] }).map((o) => JSON.stringify(o));

const anyLine = fc.oneof(
  captureLike,
  fc.string({ unit: "binary", maxLength: 2000 }),
  fc.json(),
  fc.constantFrom(
    "{",
    "[]",
    "null",
    '{"topic":"a"}',
    " ",
    "a b",
    "\u0000 \u0000",
    "{".repeat(5000),
  ),
);

function checkAnswer(line: string, parsed: ReturnType<typeof parseCaptureLine>): void {
  if (!parsed.ok) {
    assert.equal(typeof parsed.error, "string");
    assert.ok(parsed.error.length > 0, `an error with a reason for ${JSON.stringify(line)}`);
    return;
  }
  const m = parsed.entry;
  assert.equal(typeof m.topic, "string");
  assert.ok(m.payload instanceof Uint8Array);
  assert.ok([0, 1, 2].includes(m.qos));
  assert.ok(
    m.receivedAtUs === null || Number.isSafeInteger(m.receivedAtUs),
    String(m.receivedAtUs),
  );
}

Deno.test("property: parseCaptureLine() answers every line with a message or a named error", () => {
  fc.assert(
    fc.property(anyLine, (line) => checkAnswer(line, parseCaptureLine(line))),
    { seed: SEED, numRuns: 3000 },
  );
});

Deno.test("property: parseMosquittoLine() answers every line with a message or a named error", () => {
  fc.assert(
    fc.property(anyLine, (line) => checkAnswer(line, parseMosquittoLine(line))),
    { seed: SEED, numRuns: 3000 },
  );
});

Deno.test("property: a captured message parses back to the same topic, payload and time", () => {
  fc.assert(
    fc.property(
      fc.string({ minLength: 1, maxLength: 200 }).filter((t) =>
        !/[+#]/.test(t) && !t.includes("\u0000")
      ),
      fc.uint8Array({ maxLength: 300 }),
      fc.constantFrom(0, 1, 2),
      fc.boolean(),
      fc.integer({ min: 946_684_800_000_000, max: 4_102_444_800_000_000 }),
      (topic, payload, qos, retain, us) => {
        const line = encodeCaptureLine({
          topic,
          payload,
          qos: qos as 0 | 1 | 2,
          retain,
          receivedAtUs: us,
        });
        const parsed = parseCaptureLine(line);
        assert.ok(parsed.ok, parsed.ok ? "" : parsed.error);
        assert.equal(parsed.entry.topic, topic);
        assert.deepEqual(parsed.entry.payload, payload);
        assert.equal(parsed.entry.receivedAtUs, us);
      },
    ),
    { seed: SEED, numRuns: 2000 },
  );
});

import assert from "node:assert/strict";
import { floatArrayLiteral, intArrayLiteral, textArrayLiteral } from "../src/ingest/pg_array.ts";
import { withTestDatabase } from "./support/db.ts";

Deno.test("array literals read back in PostgreSQL as the same values", () =>
  withTestDatabase(async (sql) => {
    const ints = [0, 1, -5, 1_767_225_600_123_456, 9_007_199_254_740_991];
    const floats = [0.1, -2e-7, 1e21, 1.7976931348623157e308, 5e-324, 42, null, 3.14159];
    const texts = [
      "ON",
      null,
      "NULL",
      'say "hi"',
      "back\\slash",
      "a,b",
      "{braces}",
      " spaced ",
      "",
      "ünï cødé",
    ];
    // Read back as JSON: postgres.js's own array parser turns a NULL element into NaN.
    const [row] = await sql<{ i: string[]; f: (number | null)[]; t: (string | null)[] }[]>`
      select to_json(${intArrayLiteral(ints)}::int8[]::text[]) as i,
             to_json(${floatArrayLiteral(floats)}::float8[]) as f,
             to_json(${textArrayLiteral(texts)}::text[]) as t`;
    assert.deepEqual(row.i.map(Number), ints);
    assert.deepEqual(row.f, floats);
    assert.deepEqual(row.t, texts);
  }));

Deno.test("empty arrays are empty literals", () => {
  assert.equal(intArrayLiteral([]), "{}");
  assert.equal(floatArrayLiteral([]), "{}");
  assert.equal(textArrayLiteral([]), "{}");
});

/**
 * PostgreSQL array literals (`{1,2,3}`) built directly, for the big `unnest` parameters
 * of a batch. postgres.js serialises a JS array element by element (quotes and two
 * regex escapes each); for a 5,000-row batch of five columns that was one of the largest
 * costs of a batch in CPU profiles (docs/performance.md). The literal is sent as one
 * text parameter and cast in SQL (`${lit}::int8[]`), which PostgreSQL parses with its
 * own array input function (array_in).
 */

/** `{1,2,3}` for integers (ids, µs timestamps): exact up to 2^53. */
export function intArrayLiteral(xs: readonly number[]): string {
  return `{${xs.join(",")}}`;
}

/**
 * `{1.5,NULL,-2e-7}` for finite floats or null. JS prints the shortest string that
 * reads back as the same double, and PostgreSQL 12+ reads float8 input exactly, so
 * values round-trip bit for bit (except -0, which prints as 0, as postgres.js sent it).
 */
export function floatArrayLiteral(xs: readonly (number | null)[]): string {
  let out = "{";
  for (let i = 0; i < xs.length; i++) {
    if (i > 0) out += ",";
    const x = xs[i];
    out += x === null ? "NULL" : x;
  }
  return out + "}";
}

const NEEDS_ESCAPE = /["\\]/;

/**
 * `{"a","b \"q\"",NULL}` for text or null: every element quoted (so `NULL`, commas,
 * braces and spaces inside a value stay text) with `"` and `\` escaped (PostgreSQL docs,
 * "Array Value Input").
 */
export function textArrayLiteral(xs: readonly (string | null)[]): string {
  let out = "{";
  for (let i = 0; i < xs.length; i++) {
    if (i > 0) out += ",";
    const x = xs[i];
    if (x === null) {
      out += "NULL";
    } else {
      out += '"' + (NEEDS_ESCAPE.test(x) ? x.replace(/["\\]/g, "\\$&") : x) + '"';
    }
  }
  return out + "}";
}

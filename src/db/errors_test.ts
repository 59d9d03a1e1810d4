import assert from "node:assert/strict";
import { isTransientDbError, sqlStateOf } from "./errors.ts";

const pg = (code: string) => Object.assign(new Error("x"), { code });

Deno.test("isTransientDbError() waits out the database and the connection, not the data", () => {
  for (const code of ["08006", "57P01", "57P03", "53300", "40001", "40P01", "57014", "58030"]) {
    assert.equal(isTransientDbError(pg(code)), true, code);
  }
  for (const code of ["CONNECTION_CLOSED", "CONNECT_TIMEOUT", "CONNECTION_ENDED", "ECONNREFUSED"]) {
    assert.equal(isTransientDbError(pg(code)), true, code);
  }
  const refused = new Error("refused");
  refused.name = "ConnectionRefused";
  assert.equal(isTransientDbError(refused), true);
  // Data and program errors: isolate and dead-letter, never wait for them.
  for (const code of ["22P02", "23505", "23514", "54000", "42P01", "XX000", "UNDEFINED_VALUE"]) {
    assert.equal(isTransientDbError(pg(code)), false, code);
  }
  assert.equal(isTransientDbError(new TypeError("boom")), false);
  assert.equal(isTransientDbError(null), false);
  assert.equal(isTransientDbError("a string"), false);
});

Deno.test("sqlStateOf() reads only five-character SQLSTATEs", () => {
  assert.equal(sqlStateOf(pg("23514")), "23514");
  assert.equal(sqlStateOf(pg("EPIPE")), null);
  assert.equal(sqlStateOf(pg("CONNECTION_CLOSED")), null);
  assert.equal(sqlStateOf(undefined), null);
});

import assert from "node:assert/strict";
import {
  isConnectionLost,
  isTransientDbError,
  sqlStateOf,
  TransactionOverError,
  UnconfirmedCommitError,
} from "./errors.ts";

const pg = (code: string) => Object.assign(new Error("x"), { code });

Deno.test("isTransientDbError() waits out the database and the connection, not the data", () => {
  // 26000 and 25P02: a named statement a transaction pooler's server connection lacks,
  // and what follows it in the same transaction; the connection's fault, not the data's.
  for (
    const code of [
      "08006",
      "57P01",
      "57P03",
      "53300",
      "40001",
      "40P01",
      "57014",
      "58030",
      "26000",
      "25P02",
    ]
  ) {
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
  assert.equal(isTransientDbError(new UnconfirmedCommitError("ROLLBACK")), true);
  assert.equal(isTransientDbError(new TransactionOverError()), true);
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

Deno.test("isConnectionLost() is true only when nothing more can be sent on the connection", () => {
  for (const code of ["08006", "57P01", "CONNECTION_CLOSED", "ECONNRESET"]) {
    assert.equal(isConnectionLost(pg(code)), true, code);
  }
  // The connection is alive and its transaction must still be rolled back.
  for (const code of ["40001", "57014", "26000", "25P02", "23505", "53300"]) {
    assert.equal(isConnectionLost(pg(code)), false, code);
  }
  assert.equal(isConnectionLost(new UnconfirmedCommitError("ROLLBACK")), false);
});

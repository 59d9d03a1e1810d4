/**
 * Which database errors mean "the database is (momentarily) not there" rather than
 * "this data cannot be written". Only the first kind may hold a batch back and make
 * feedline report the database as down; the processor turns the second kind into
 * reject rows (issue 10).
 */

/** Error codes postgres.js and the socket layer give to a lost or refused connection. */
const CONNECTION_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/**
 * True for a transient or connectivity error: SQLSTATE class 08 (connection), 53
 * (insufficient resources), 40 (transaction rollback: serialization, deadlock), 57P
 * (operator intervention: shutdown, crash), 57014 (query canceled), or a connection
 * error without SQLSTATE (refused, reset, closed, timed out).
 *
 * @example
 * ```ts
 * isTransientDbError({ code: "08006" }); // true
 * isTransientDbError({ code: "23505" }); // false: unique violation, a data error
 * isTransientDbError(new TypeError("x")); // false: a bug of ours
 * ```
 */
export function isTransientDbError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return false;
  if (CONNECTION_CODES.has(code)) return true;
  if (/^[0-9A-Z]{5}$/.test(code)) {
    return code.startsWith("08") || code.startsWith("53") || code.startsWith("40") ||
      code.startsWith("57P") || code === "57014";
  }
  return false;
}

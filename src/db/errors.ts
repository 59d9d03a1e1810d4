/**
 * Which database errors are the database's (wait and retry the batch) and which are a
 * message's (isolate it and dead-letter it). A batch must never be retried forever for
 * something in its data, and a data error must never be reported as the database down.
 *
 * Transient, by SQLSTATE class (PostgreSQL, Appendix A): 08 connection exception,
 * 53 insufficient resources, 57P operator intervention (shutdown, crash, cannot connect
 * now), 57014 query cancelled (a statement timeout, a lock held by someone else), 40
 * transaction rollback (serialization failure, deadlock), 58 system error (I/O). Also
 * every error without a SQLSTATE that comes from the connection: postgres.js's own codes
 * (CONNECTION_CLOSED, CONNECT_TIMEOUT, ...) and the socket's (ECONNREFUSED, ...).
 */

const SQLSTATE_RE = /^[0-9A-Z]{5}$/;

/** The SQLSTATE of a PostgreSQL error, or null for any other error. */
export function sqlStateOf(error: unknown): string | null {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && SQLSTATE_RE.test(code) && /\d/.test(code) ? code : null;
}

/** Is this a failure of the database or the connection, worth waiting out and retrying? */
export function isTransientDbError(error: unknown): boolean {
  const state = sqlStateOf(error);
  if (state !== null) {
    return state.startsWith("08") || state.startsWith("53") || state.startsWith("57P") ||
      state === "57014" || state.startsWith("40") || state.startsWith("58");
  }
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string") {
    return code.startsWith("CONNECT") || code.startsWith("E");
  }
  // Deno's own socket errors carry no code, only a class name.
  const name = (error as { name?: unknown } | null)?.name;
  return typeof name === "string" &&
    /^(ConnectionRefused|ConnectionReset|ConnectionAborted|BrokenPipe|TimedOut|NotConnected|Interrupted|UnexpectedEof)$/
      .test(name);
}

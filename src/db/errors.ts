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
 *
 * Also transient: 26000 (a named prepared statement the server connection does not have)
 * and 25P02 (a statement in a transaction that already failed). feedline prepares no
 * statements of its own; the driver's named statements go missing when a transaction
 * pooler hands a transaction another server connection, and 25P02 follows such a failure
 * in the same transaction. Neither is caused by a message (docs/scaling.md, "Behind a
 * pooler"). And a commit PostgreSQL did not confirm, or a transaction lost with its
 * connection (src/db/transaction.ts): the batch was not stored, and is retried.
 */

/**
 * COMMIT answered with another command tag (PostgreSQL answers ROLLBACK to the COMMIT of
 * a transaction that had failed): nothing of the transaction was stored.
 */
export class UnconfirmedCommitError extends Error {
  override name = "UnconfirmedCommitError";
  readonly code = "COMMIT_UNCONFIRMED";
  constructor(readonly answer: string) {
    super(
      `PostgreSQL answered ${answer || "nothing"} to COMMIT: the transaction had failed ` +
        `and nothing of it was stored`,
    );
  }
}

/** A statement sent on a transaction that is over (committed, rolled back or lost). */
export class TransactionOverError extends Error {
  override name = "TransactionOverError";
  readonly code = "TRANSACTION_OVER";
  constructor() {
    super("statement sent on a transaction that is over (committed, rolled back or lost)");
  }
}

const SQLSTATE_RE = /^[0-9A-Z]{5}$/;

/** The SQLSTATE of a PostgreSQL error, or null for any other error. */
export function sqlStateOf(error: unknown): string | null {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && SQLSTATE_RE.test(code) && /\d/.test(code) ? code : null;
}

/** Is this a failure of the database or the connection, worth waiting out and retrying? */
export function isTransientDbError(error: unknown): boolean {
  if (error instanceof UnconfirmedCommitError || error instanceof TransactionOverError) return true;
  const state = sqlStateOf(error);
  if (state !== null) {
    return state === "26000" || state === "25P02" || state.startsWith("08") ||
      state.startsWith("53") || state.startsWith("57P") ||
      state === "57014" || state.startsWith("40") || state.startsWith("58");
  }
  return isSocketError(error);
}

/**
 * Is the connection this error came on gone? A connection exception (08), the server
 * ending the session (57P01-57P03, sent as FATAL before it closes), or an error of the
 * driver or the socket without a SQLSTATE. Nothing more may be sent on that connection,
 * not even a ROLLBACK (src/db/transaction.ts).
 */
export function isConnectionLost(error: unknown): boolean {
  const state = sqlStateOf(error);
  if (state !== null) {
    return state.startsWith("08") || state === "57P01" || state === "57P02" || state === "57P03";
  }
  return isSocketError(error);
}

/** postgres.js's connection codes (CONNECTION_CLOSED, ...), the socket's (ECONNRESET, ...). */
function isSocketError(error: unknown): boolean {
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

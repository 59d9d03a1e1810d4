/**
 * A transaction pooler found at run time (docs/scaling.md, "Poolers: PgBouncer in
 * transaction mode").
 *
 * With `prepare: true` postgres.js names each statement it sends and prepares it once per
 * client connection. A pooler in transaction mode (PgBouncer, Supavisor, PgCat) hands
 * each transaction of that client connection any server connection, where a statement
 * prepared on another one does not exist: PostgreSQL answers 26000. feedline prepares no
 * statements of its own, so a 26000 means exactly that, whether or not `--db-pooler
 * transaction` said so.
 */
import type postgres from "postgres";
import { sqlStateOf } from "./errors.ts";

/** A named prepared statement the server connection does not have (SQLSTATE 26000)? */
export function isLostPreparedStatement(error: unknown): boolean {
  return sqlStateOf(error) === "26000";
}

/**
 * Makes a live pool send no more named prepared statements, as `--db-pooler transaction`
 * does from the start; true when this call switched it (false: it already was).
 *
 * Why this works without a new pool or a restart: postgres.js reads `prepare` each time
 * it builds a query, from the one options object every connection of the pool shares,
 * which is `sql.options`. Statements it had prepared are not used any more (each query is
 * parsed unnamed). test/commit_test.ts checks this against the driver (no named statement
 * on the connection after the switch), so an upgrade that changed it fails there.
 */
export function stopNamedPreparedStatements(sql: postgres.Sql): boolean {
  const options = sql.options as { prepare: boolean };
  if (options.prepare === false) return false;
  options.prepare = false;
  return true;
}

/** The line serve logs, once, when it finds a transaction pooler on its own. */
export const TRANSACTION_POOLER_FOUND =
  "the database looks like a transaction pooler (a named prepared statement went missing, " +
  "26000): sending no named prepared statements from now on, and retrying. Start with " +
  "--db-pooler transaction to say so up front";

// Who wants to hear of it, per pool (serve logs it; src/db/database.ts registers it).
const listeners = new WeakMap<postgres.Sql, (message: string) => void>();

/** Calls `tell` with one line for the log, once, when `sql` is found behind a pooler. */
export function whenTransactionPoolerFound(
  sql: postgres.Sql,
  tell: (message: string) => void,
): void {
  listeners.set(sql, tell);
}

/**
 * Called with the error of a failed transaction (src/db/transaction.ts): one that shows a
 * transaction pooler stops named statements on `sql`, and the first time says so.
 */
export function notePoolerError(sql: postgres.Sql, error: unknown): void {
  if (isLostPreparedStatement(error) && stopNamedPreparedStatements(sql)) {
    listeners.get(sql)?.(TRANSACTION_POOLER_FOUND);
  }
}

/**
 * Transactions whose commit PostgreSQL itself confirmed (docs/delivery.md, 'What "stored"
 * means'). Nothing is counted stored, acknowledged or reported until this resolves.
 *
 * Why not `sql.begin` alone: postgres.js ends it with `commit` sent as a tagged query,
 * which with `prepare: true` is a named prepared statement. Behind a transaction pooler
 * its Bind can reach a server connection that never parsed it: the server answers 26000
 * and aborts the transaction, the driver prepares `commit` again on the aborted
 * transaction, PostgreSQL answers that COMMIT with ROLLBACK and no error, and `sql.begin`
 * resolves as if everything were stored (docs/scaling.md, "Poolers: PgBouncer in
 * transaction mode").
 *
 * So `sql.begin` only holds the connection (its BEGIN is on the simple query protocol
 * already), and the transaction is ended here: `commit and chain` on the simple protocol
 * (`unsafe` with no parameters: no named statement a pooler could lose), whose command
 * tag is checked. `COMMIT` is the database's word that the work is stored; PostgreSQL
 * answers `ROLLBACK` to the commit of a transaction that had failed, and that throws
 * `UnconfirmedCommitError`, which src/db/errors.ts classes with a lost connection: the
 * caller keeps its batch and retries it.
 *
 * Why `and chain`: the driver hands the connection back to the pool as soon as it is
 * outside a transaction block. The chained transaction keeps it ours until `sql.begin`
 * sends its own final `commit`, which now ends an empty transaction (its outcome no longer
 * matters, and the caller does not wait for it). Savepoints go on the simple protocol
 * too. A connection lost mid-transaction, or a COMMIT that failed outright (which leaves
 * the connection idle, back in the pool), ends the transaction here at once, and
 * `sql.begin` is left to send nothing more on that connection.
 */
import type postgres from "postgres";
import { isConnectionLost, TransactionOverError, UnconfirmedCommitError } from "./errors.ts";
import { notePoolerError } from "./pooler.ts";

/** What the transaction's function gets: queries, and `savepoint` around a part. */
export type Transaction = postgres.TransactionSql;

/**
 * Runs `fn` in a transaction and resolves with its result once PostgreSQL confirmed the
 * COMMIT. Rolls back and rethrows when `fn` throws; throws `UnconfirmedCommitError` when
 * COMMIT did not commit, the database's error when COMMIT failed, and the driver's
 * connection error when the connection was lost. A failure that shows a transaction
 * pooler makes the pool stop naming prepared statements (src/db/pooler.ts) first.
 * Needs PostgreSQL 12 or newer (`commit and chain`).
 *
 * @example
 * ```ts
 * const n = await confirmedTransaction(sql, async (tx) => {
 *   await tx`insert into t values (1)`;
 *   return await tx.savepoint((sp) => sp`insert into t values (2)`);
 * });
 * ```
 */
export async function confirmedTransaction<T>(
  sql: postgres.Sql,
  fn: (tx: Transaction) => Promise<T>,
): Promise<T> {
  try {
    return await runConfirmed(sql, fn);
  } catch (error) {
    notePoolerError(sql, error);
    throw error;
  }
}

/** Returned to `sql.begin` when it must send nothing more on its connection. */
const NEVER = new Promise<never>(() => {});

function runConfirmed<T>(sql: postgres.Sql, fn: (tx: Transaction) => Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    // Settled: the outcome is known and the caller told; from then on nothing is sent.
    let settled = false;
    // Over: statements of `fn` are refused (TransactionOverError).
    let over = false;
    const settle = (commit: boolean, value: unknown) => {
      over = true;
      if (settled) return;
      settled = true;
      if (commit) resolve(value as T);
      else reject(value);
    };

    sql.begin(async (raw) => {
      let savepoints = 0;
      const tx = guarded(raw, () => over, async (inner) => {
        const name = `s${savepoints++}`;
        await raw.unsafe(`savepoint ${name}`);
        try {
          return await inner(tx);
        } catch (error) {
          if (!over && !isConnectionLost(error)) {
            await raw.unsafe(`rollback to savepoint ${name}`);
          }
          throw error;
        }
      });
      let value: T;
      try {
        value = await fn(tx);
      } catch (error) {
        over = true;
        // A lost connection takes its transaction with it; a ROLLBACK written to its dead
        // socket would throw from a timer, or go out ahead of the next connection's start.
        if (settled || isConnectionLost(error)) {
          settle(false, error);
          return NEVER;
        }
        throw error; // `sql.begin` rolls back, then fails with it
      }
      over = true;
      if (settled) return NEVER;
      let done: postgres.RowList<postgres.Row[]>;
      try {
        done = await raw.unsafe("commit and chain");
      } catch (error) {
        // COMMIT failed (a deferred constraint, a lost connection): the transaction is
        // over and the connection idle or gone; anything `sql.begin` sent now could land
        // in the next user's transaction.
        settle(false, error);
        return NEVER;
      }
      // ROLLBACK: the transaction had failed. The chained one is rolled back by sql.begin.
      if (done.command !== "COMMIT") throw new UnconfirmedCommitError(done.command);
      settle(true, value);
    }).then(
      // Reached only after `settle(true, ...)` above.
      () => settle(false, new UnconfirmedCommitError("")),
      (error) => settle(false, error),
    );
  });
}

/**
 * The transaction as `fn` sees it: queries go through while it is open and throw
 * `TransactionOverError` after, so nothing a caller still sends can run outside it (in
 * autocommit, or on a connection the pool gave to another); `savepoint` is this module's.
 */
function guarded(
  raw: postgres.TransactionSql,
  isOver: () => boolean,
  savepoint: <R>(inner: (sp: Transaction) => R | Promise<R>) => Promise<R>,
): Transaction {
  const check = () => {
    if (isOver()) throw new TransactionOverError();
  };
  const unsafe: postgres.Sql["unsafe"] = (...args) => {
    check();
    return raw.unsafe(...args);
  };
  return new Proxy(raw, {
    apply(target, self, args) {
      // A tagged template runs a query; a helper call (`tx(name)`, `tx(rows)`) does not.
      if (Array.isArray(args[0]?.raw)) check();
      return Reflect.apply(target, self, args);
    },
    get(target, key, receiver) {
      if (key === "savepoint") {
        return (...args: unknown[]) => {
          check();
          return savepoint(args[args.length - 1] as (sp: Transaction) => unknown);
        };
      }
      if (key === "unsafe") return unsafe;
      if (key === "prepare") return undefined;
      return Reflect.get(target, key, receiver);
    },
  }) as Transaction;
}

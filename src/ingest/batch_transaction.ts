/**
 * One transaction of the processor (src/ingest/processor.ts): the work, the caller's
 * statements around it, a dry run's rollback, and what runs only after the commit.
 */
import type postgres from "postgres";
import type { DecodedMessage } from "../core/message.ts";
import { confirmedTransaction, type Transaction } from "../db/transaction.ts";
import type { BatchResult } from "./write/result.ts";

/**
 * Statements around the work of one transaction of the processor
 * (`ProcessorOptions.inTransaction`): `process` is to be called once, with room for more
 * statements before and after it. `replay --rejects` and serve's re-processing delete the
 * dead-letter rows they re-process first, so those rejected again are written anew and
 * the rest are gone, in the same commit; serve's clock lane raises its mark.
 *
 * A batch the careful way bisects is written in several transactions: `part` is the
 * messages of this one (the batch's own objects), and `process(only)` writes just
 * `only`, a subset of `part` (default: all of it). What the hook learns is true only if
 * this transaction commits: it may return a function, called once PostgreSQL confirmed
 * the commit (and after a dry run's planned rollback, which reports like a commit), never
 * for a transaction that failed.
 */
export type TransactionHook = (
  tx: postgres.TransactionSql,
  process: (only?: readonly DecodedMessage[]) => Promise<void>,
  part: readonly DecodedMessage[],
) => Promise<void | (() => void)>;

/** Thrown to roll back a dry run; carries the result it reports all the same. */
class DryRunRollback {
  constructor(readonly result: BatchResult) {}
}

/**
 * Runs `work` on `part` in a transaction, inside `opts.inTransaction` when given (which
 * may narrow it), and returns its result once PostgreSQL confirmed the commit
 * (src/db/transaction.ts); a dry run does all of it, then rolls back. A result is built
 * by each run of `work`, so nothing of a failed attempt is counted; nor is what the hook
 * learned (its after-commit function runs only here, after the commit).
 */
export async function inBatchTransaction(
  sql: postgres.Sql,
  opts: { inTransaction?: TransactionHook; dryRun?: boolean },
  part: readonly DecodedMessage[],
  work: (tx: Transaction, only: readonly DecodedMessage[]) => Promise<BatchResult>,
): Promise<BatchResult> {
  let afterCommit: (() => void) | undefined;
  let result: BatchResult;
  try {
    result = await confirmedTransaction(sql, async (tx) => {
      let done: BatchResult | undefined;
      const process = async (only: readonly DecodedMessage[] = part) => {
        done = await work(tx, only);
      };
      if (!opts.inTransaction) await process();
      else afterCommit = (await opts.inTransaction(tx, process, part)) ?? undefined;
      if (!done) throw new Error("ProcessorOptions.inTransaction did not run the batch");
      if (opts.dryRun) throw new DryRunRollback(done);
      return done;
    });
  } catch (error) {
    if (!(error instanceof DryRunRollback)) throw error;
    result = error.result; // a dry run reports what a commit would have done
  }
  (afterCommit as (() => void) | undefined)?.(); // assigned in the callback above
  return result;
}

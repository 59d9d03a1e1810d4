/**
 * Isolation of refused rows (docs/delivery.md, "Poison messages"): an insert the database
 * refuses is split inside savepoints until the rows it refuses are alone, so one bad row
 * never takes the others of its batch down with it.
 */
import type { Transaction } from "../../db/transaction.ts";
import { isTransientDbError, sqlStateOf } from "../../db/errors.ts";
import { describeError } from "../../errors.ts";

/** A row the database refused, with its reason for the dead letter. */
export interface Poison<T> {
  row: T;
  detail: string;
}

/**
 * What a refusal says, for `ingest_rejects.detail`: the SQLSTATE and the database's
 * message, or the error itself when it did not come from the database.
 */
export function refusalDetail(error: unknown): string {
  const state = sqlStateOf(error);
  return state ? `${state}: ${(error as Error).message}` : describeError(error);
}

/**
 * Inserts rows with `insert`, in a savepoint. When the database refuses them for
 * anything but a transient failure (src/db/errors.ts), they are split in halves, each
 * in its own savepoint, until the refused rows are isolated; those are returned, the
 * rest are inserted.
 */
export async function insertIsolated<T>(
  tx: Transaction,
  rows: T[],
  insert: (sp: Transaction, rows: T[]) => Promise<number>,
): Promise<{ inserted: number; poison: Poison<T>[] }> {
  try {
    return { inserted: await tx.savepoint((sp) => insert(sp, rows)), poison: [] };
  } catch (error) {
    if (isTransientDbError(error)) throw error;
    if (rows.length === 1) {
      return { inserted: 0, poison: [{ row: rows[0], detail: refusalDetail(error) }] };
    }
    const middle = rows.length >>> 1;
    const a = await insertIsolated(tx, rows.slice(0, middle), insert);
    const b = await insertIsolated(tx, rows.slice(middle), insert);
    return { inserted: a.inserted + b.inserted, poison: [...a.poison, ...b.poison] };
  }
}

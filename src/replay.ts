/**
 * Replay into the database: messages read from capture files go through `decode` and
 * `processBatch`, the same core `serve` uses, in batches. One batch is written while the
 * next is read and decoded, so reading and writing overlap; memory holds two batches.
 *
 * Idempotent: a message keeps the receive time it was captured with, which is the
 * created_at of a reading without a device timestamp, so the (feed_id, created_at) key
 * and `on conflict do nothing` absorb every reading that is already stored.
 */
import type postgres from "postgres";
import type { ReadBadLine, ReadItem } from "./capture_reader.ts";
import { decode, type DecodeOptions } from "./decode.ts";
import { describePgError } from "./database.ts";
import { FeedlineError } from "./errors.ts";
import type { Inbound, Pending } from "./message.ts";
import { type BatchResult, processBatch, type ProcessorOptions } from "./processor.ts";
import { addBatch, type ReplayTotals } from "./replay_totals.ts";

/** What a replay of messages needs. */
export interface ReplayOptions {
  sql: postgres.Sql;
  decode: DecodeOptions;
  processor: ProcessorOptions;
  batchSize: number;
  /** False for messages outside the filters (--since, --until, --topic). */
  accept: (inbound: Inbound) => boolean;
  /** Stop at the first bad line. */
  strict: boolean;
  onBadLine: (bad: ReadBadLine) => void;
  /** Called after each chunk of input. */
  onProgress?: () => void;
  /** Attempts per batch when the database fails, before giving up. */
  attempts?: number;
}

/** Replays `input` into the database; counts into `totals`. */
export async function replayIntoDatabase(
  input: AsyncIterable<ReadItem[]>,
  opts: ReplayOptions,
  totals: ReplayTotals,
): Promise<void> {
  let batch: Pending[] = [];
  let writing: Promise<void> | null = null;
  let failure: unknown = null;

  const submit = async (pending: Pending[]) => {
    if (writing) await writing;
    if (failure) throw failure;
    writing = writeBatch(opts, pending, totals).catch((error) => {
      failure = error;
    });
  };

  try {
    outer: for await (const items of input) {
      for (const item of items) {
        if (item.kind === "bad") {
          totals.badLines++;
          opts.onBadLine(item);
          if (opts.strict) {
            totals.stoppedAt = `${item.source}:${item.line}`;
            break outer;
          }
          continue;
        }
        totals.messages++;
        if (!opts.accept(item.inbound)) {
          totals.filtered++;
          continue;
        }
        batch.push({ inbound: item.inbound, decoded: decode(item.inbound, opts.decode) });
        if (batch.length >= opts.batchSize) {
          await submit(batch);
          batch = [];
        }
      }
      opts.onProgress?.();
    }
    if (batch.length > 0) await submit(batch);
  } finally {
    if (writing) await writing;
  }
  if (failure) throw failure;
}

/** Writes one batch, retrying with backoff while the database fails. */
export async function writeBatch(
  opts: Pick<ReplayOptions, "sql" | "processor" | "attempts">,
  batch: Pending[],
  totals: ReplayTotals,
): Promise<void> {
  const attempts = opts.attempts ?? 5;
  for (let attempt = 1;; attempt++) {
    let result: BatchResult;
    try {
      result = await processBatch(opts.sql, batch, opts.processor);
    } catch (error) {
      if (attempt >= attempts) {
        throw new FeedlineError(
          "DATABASE_UNREACHABLE",
          `writing a batch failed ${attempts} times: ${describePgError(error)}; ` +
            `${totals.processed} messages were written before it. Replay is idempotent: ` +
            `run it again once the database is back`,
          { cause: error },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** attempt));
      continue;
    }
    addBatch(totals, result);
    return;
  }
}

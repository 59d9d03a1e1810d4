/**
 * Replay into the database: messages read from capture files go through `decode` and
 * `processBatch`, the same core `serve` uses, in batches. One batch is written while the
 * next is read and decoded, so reading and writing overlap; memory holds two batches.
 *
 * Idempotent: a message keeps the receive time it was captured with, which is the
 * created_at of a reading without a device timestamp, so the (feed_id, created_at) key
 * and `on conflict do nothing` absorb every reading that is already stored. Lines with no
 * time (`mosquitto_sub -v`) are stamped when read: those a second replay would store again
 * (readings and statuses without a device timestamp, rejects) are counted in `untimed`,
 * and the summary warns about them.
 */
import type postgres from "postgres";
import type { ReadItem } from "../capture/reader.ts";
import { decode, type DecodeOptions } from "../core/decode.ts";
import { describePgError } from "../db/database.ts";
import { FeedlineError } from "../errors.ts";
import type { Decoded, DecodedMessage } from "../core/message.ts";
import { type BatchResult, processBatch, type ProcessorOptions } from "../ingest/processor.ts";
import type { AssembledProcessorOptions } from "../ingest/assembly.ts";
import { coverBatch } from "../ingest/backfill.ts";
import { retryWithBackoff } from "../ingest/retry.ts";
import { selectMessages, type SelectOptions } from "./input.ts";
import { addBatch, type ReplayTotals } from "./totals.ts";

/** What a replay into the database needs. */
export interface ReplayOptions extends SelectOptions {
  sql: postgres.Sql;
  decode: DecodeOptions;
  processor: ProcessorOptions;
  batchSize: number;
  /** Attempts per batch when the database fails, before giving up. */
  attempts?: number;
  /** A line for stderr: something went wrong that does not stop the replay. */
  onWarning?(text: string): void;
}

/** Replays `input` into the database; counts into `totals`. */
export async function replayIntoDatabase(
  input: AsyncIterable<ReadItem[]>,
  opts: ReplayOptions,
  totals: ReplayTotals,
): Promise<void> {
  let batch: DecodedMessage[] = [];
  let writing: Promise<void> | null = null;
  let failure: unknown = null;

  const submit = async (pending: DecodedMessage[]) => {
    if (writing) await writing;
    if (failure) throw failure;
    writing = writeBatch(opts, pending, totals).catch((error) => {
      failure = error;
    });
  };

  try {
    for await (const messages of selectMessages(input, opts, totals)) {
      for (const inbound of messages) {
        const decoded = decode(inbound, opts.decode);
        if (inbound.timeless && storedAgain(decoded)) totals.untimed++;
        batch.push({ inbound, decoded });
        if (batch.length >= opts.batchSize) {
          await submit(batch);
          batch = [];
        }
      }
    }
    if (batch.length > 0) await submit(batch);
  } finally {
    if (writing) await writing;
  }
  if (failure) throw failure;
}

/**
 * Whether a message read without a receive time is stored again by a second replay: its
 * readings or status event when not keyed by times of their own (device timestamps), and
 * a reject, whose dead-letter row is keyed by the receive time it got when read. A skip
 * stores nothing.
 */
function storedAgain(decoded: Decoded): boolean {
  if (decoded.kind === "reject") return true;
  return !hasOwnTime(decoded);
}

/** Whether a message's rows are keyed by times of its own (device timestamps). */
function hasOwnTime(decoded: Decoded): boolean {
  if (decoded.kind === "readings") return decoded.readings.every((r) => r.tsUs !== null);
  if (decoded.kind === "status") return decoded.tsUs !== null;
  if (decoded.kind === "sparkplug") {
    const sp = decoded.sparkplug;
    return sp.tsUs !== null || sp.metrics.every((m) => m.tsUs !== null);
  }
  return true;
}

/**
 * Writes one batch, retrying with backoff while the database fails (waits of 0.4, 0.8,
 * 1.6 and 3.2 s with the default 5 attempts), then stops with one line.
 */
export async function writeBatch(
  opts: Pick<ReplayOptions, "sql" | "processor" | "attempts" | "onWarning">,
  batch: DecodedMessage[],
  totals: ReplayTotals,
): Promise<void> {
  const attempts = opts.attempts ?? 5;
  // Partitions for old readings first (docs/scaling.md, "Backfill"); a failure there is
  // a warning, and the batch goes to the default partition as it would have.
  const cover = (opts.processor as AssembledProcessorOptions).backfill;
  if (cover) {
    await coverBatch(opts.sql, cover, batch, {
      onCreated: (r) => totals.partitionsCreated.push(...r.created),
      onError: (error) =>
        opts.onWarning?.(`could not create a partition: ${describePgError(error)}`),
    });
  }
  let result: BatchResult;
  try {
    result = await retryWithBackoff(() => processBatch(opts.sql, batch, opts.processor), {
      firstDelayMs: 400,
      maxDelayMs: 3200,
      attempts,
    });
  } catch (error) {
    throw new FeedlineError(
      "DATABASE_UNREACHABLE",
      `writing a batch failed ${attempts} times: ${describePgError(error)}; ` +
        `${totals.processed} messages were written before it. Replay is idempotent: ` +
        `run it again once the database is back`,
      { cause: error },
    );
  }
  addBatch(totals, result);
}

/**
 * The processor: one batch of decoded messages → one PostgreSQL transaction. It knows
 * nothing of MQTT or files; `serve` and `replay` call it alike, and tests call it
 * directly against a real database. This file holds the ways a batch is written; the
 * work inside a transaction is in src/ingest/write/ (docs/architecture.md, "The data
 * path"): the keys and the plan (`plan.ts`, pure), the lookups through the caches
 * (`lookups.ts`), one writer per table (`values.ts`, `statuses.ts`, `rejects.ts`,
 * `alerts.ts`) and the result (`result.ts`).
 *
 * Per batch: one query for the feeds and one for the devices the caches do not know, one
 * statement that inserts the values (`unnest`) and moves each feed's last value forward,
 * one insert of status history and one device update, one insert of rejects. The values
 * are first written the fast way, without savepoint or `on conflict`
 * (src/ingest/write/fast_or_careful.ts); a batch the fast way cannot write is written
 * again the careful way described next.
 *
 * No message can block a batch (docs/delivery.md, "Poison messages"): every insert of
 * rows that come from messages (values, status events, rejects) is split inside
 * savepoints when the database refuses it, until the refused rows are isolated and
 * dead-lettered (src/ingest/write/isolation.ts); and if the transaction still fails for
 * anything but the database or the connection (src/db/errors.ts), the batch is bisected
 * into separate transactions down to the one message that fails, which is dead-lettered
 * with the error.
 */
import type postgres from "postgres";
import type { DecodedMessage } from "../core/message.ts";
import { isTransientDbError, sqlStateOf } from "../db/errors.ts";
import type { Transaction } from "../db/transaction.ts";
import { inBatchTransaction, type TransactionHook } from "./batch_transaction.ts";
import type { DeviceCache } from "./device_cache.ts";
import type { FeedCache } from "./feed_cache.ts";
import type { TenantCache } from "./tenant_cache.ts";
import { lockAlertStates, writeAlerts } from "./write/alerts.ts";
import { autoRegister } from "./write/auto_register.ts";
import { FastOrCareful } from "./write/fast_or_careful.ts";
import { refusalDetail } from "./write/isolation.ts";
import { lookupDevices, lookupFeeds, lookupTenants } from "./write/lookups.ts";
import { aliasesOf, keysOf, planBatch, type PlanRules, withTenants } from "./write/plan.ts";
import { DEFAULT_REJECT_PAYLOAD_CAP, insertRejects, mergeRejects } from "./write/rejects.ts";
import {
  type BatchResult,
  deadLetterResult,
  emptyResult,
  mergeResults,
  resultOf,
} from "./write/result.ts";
import type { RejectRow } from "./write/rows.ts";
import { prepareSparkplug, type SparkplugSettings } from "./write/sparkplug.ts";
import { writeStatuses } from "./write/statuses.ts";
import { writeValuesCarefully, writeValuesFast } from "./write/values.ts";

export { MAX_REJECT_TOPIC_CHARS } from "./write/rejects.ts";
export { type BatchResult, MAX_REJECT_DETAILS, type RejectDetail } from "./write/result.ts";
export type { ValueConflict } from "./write/values.ts";
export type { TransactionHook } from "./batch_transaction.ts";

/** Options of the processor. */
export interface ProcessorOptions {
  /** Create unknown users, devices and feeds instead of rejecting (dev mode). */
  autoRegister?: boolean;
  /** Bytes of a rejected payload kept in `ingest_rejects` (the size is recorded). */
  rejectPayloadCap?: number;
  feedCache?: FeedCache;
  /**
   * Reject readings of a device that is not registered under its user, as
   * `unknown_device` (as status messages already are). Off: readings need only their feed
   * (the reference design's behaviour, `--accept-unregistered-devices`).
   */
  requireDevice?: boolean;
  /** Registered devices already seen, for readings and statuses alike. */
  deviceCache?: DeviceCache;
  /** Tenant aliases already resolved (mappings, sql/008). */
  tenantCache?: TenantCache;
  /** Do everything, then roll back: for `replay --dry-run`. */
  dryRun?: boolean;
  /** Statements around each transaction's work (src/ingest/batch_transaction.ts). */
  inTransaction?: TransactionHook;
  /** Fast or careful writes (src/ingest/write/fast_or_careful.ts); one shared by default. */
  fastOrCareful?: FastOrCareful;
  /** Sparkplug B state and registration (src/ingest/write/sparkplug.ts). */
  sparkplug?: SparkplugSettings;
  /** Widths of feed_rollups kept with the readings (src/ingest/write/rollups.ts). */
  rollups?: readonly string[] | null;
}

// Callers that do not keep their own still learn from one another's fallbacks.
const sharedWays = new FastOrCareful();

/**
 * Processes one batch and returns its totals, once PostgreSQL confirmed the commit
 * (src/db/transaction.ts). Throws only for a failure of the database or the connection
 * (src/db/errors.ts; a commit the database did not confirm, and a prepared statement a
 * pooler lost, are among them): the caller keeps the batch and retries; nothing of it
 * needs to be acknowledged yet, and re-processing it is idempotent. Any other failure is
 * isolated to the messages that cause it, which are dead-lettered.
 */
export async function processBatch(
  sql: postgres.Sql,
  batch: DecodedMessage[],
  opts: ProcessorOptions = {},
): Promise<BatchResult> {
  const ways = opts.fastOrCareful ?? sharedWays;
  if (ways.fastAllowed()) {
    try {
      const result = await processInOneTransaction(sql, batch, opts, true);
      ways.fastSucceeded();
      return result;
    } catch (error) {
      if (isTransientDbError(error)) throw error;
      // Rolled back whole: written again below, the careful way.
      ways.fastFailed();
    }
  }
  return await processCarefully(sql, batch, opts);
}

/** The careful way: refused rows isolated in savepoints, the rest bisected. */
async function processCarefully(
  sql: postgres.Sql,
  batch: DecodedMessage[],
  opts: ProcessorOptions,
): Promise<BatchResult> {
  try {
    return await processInOneTransaction(sql, batch, opts, false);
  } catch (error) {
    if (isTransientDbError(error)) throw error;
    if (batch.length === 1) return await deadLetterAlone(sql, batch[0], opts, error);
    // Each half commits on its own; a retry after a later transient failure re-processes
    // a committed half idempotently (duplicates are absorbed by the keys).
    const middle = batch.length >>> 1;
    const a = await processCarefully(sql, batch.slice(0, middle), opts);
    const b = await processCarefully(sql, batch.slice(middle), opts);
    return mergeResults(a, b);
  }
}

/**
 * The one message of a batch that still fails on its own: dead-lettered with the error,
 * `db_rejected` with its SQLSTATE when the database refused it, else `internal_error`.
 */
async function deadLetterAlone(
  sql: postgres.Sql,
  pending: DecodedMessage,
  opts: ProcessorOptions,
  error: unknown,
): Promise<BatchResult> {
  const reject: RejectRow = {
    message: 0,
    reason: sqlStateOf(error) ? "db_rejected" : "internal_error",
    detail: refusalDetail(error),
  };
  return await inBatchTransaction(sql, opts, [pending], async (tx, only) => {
    if (only.length === 0) return emptyResult(0); // the hook kept it from this transaction
    await insertRejects(tx, [pending], [reject], payloadCapOf(opts));
    return deadLetterResult(pending, reject);
  });
}

async function processInOneTransaction(
  sql: postgres.Sql,
  batch: DecodedMessage[],
  opts: ProcessorOptions,
  fast: boolean,
): Promise<BatchResult> {
  if (batch.length === 0) return emptyResult(0);
  return await inBatchTransaction(
    sql,
    opts,
    batch,
    (tx, only) =>
      only.length === 0
        ? Promise.resolve(emptyResult(0))
        : writeBatch(tx, only === batch ? batch : only.slice(), opts, fast),
  );
}

/**
 * One batch inside its transaction: Sparkplug messages resolved to readings, keys,
 * lookups, plan, then each table's writer.
 */
async function writeBatch(
  tx: Transaction,
  decoded: DecodedMessage[],
  opts: ProcessorOptions,
  fast: boolean,
): Promise<BatchResult> {
  const rules: PlanRules = {
    requireDevice: opts.requireDevice ?? false,
    autoRegister: opts.autoRegister ?? false,
  };
  const tenants = await lookupTenants(tx, aliasesOf(decoded), opts.tenantCache, rules.autoRegister);
  const batch = withTenants(decoded, tenants); // mappings: each alias's user (src/core/mappings/)
  const sparkplug = await prepareSparkplug(tx, batch, opts.sparkplug);
  const messages = sparkplug?.messages ?? batch;
  const keys = keysOf(messages, rules);
  sparkplug?.nameDevices(keys);
  if (rules.autoRegister) await autoRegister(tx, keys);
  const found = {
    feeds: await lookupFeeds(tx, keys.feeds, opts.feedCache),
    devices: await lookupDevices(tx, keys.devices, opts.deviceCache, rules),
  };
  const plan = planBatch(messages, keys, found, rules);
  sparkplug?.planStatuses(plan, found.devices);
  // Feeds with alert rules: their state is locked before their readings go in.
  const alerting = await lockAlertStates(tx, found.feeds);
  // The fast way fails on any refusal, a duplicate included: see processBatch.
  const write = fast ? writeValuesFast : writeValuesCarefully;
  const values = await write(tx, plan.values, opts.rollups);
  // A refused row may name a feed or a device deleted meanwhile: look them up afresh.
  if (values.refused > 0) opts.feedCache?.clear();
  const statuses = await writeStatuses(tx, plan.statuses, plan.retained);
  if (statuses.refused) opts.deviceCache?.clear();
  const rejects = mergeRejects([...plan.rejects, ...values.rejects, ...statuses.rejects]);
  await insertRejects(tx, batch, rejects, payloadCapOf(opts));
  const alerts = alerting
    ? await writeAlerts(tx, messages, alerting, plan.values, values.notStored)
    : undefined;
  return resultOf(batch, { plan, values, statuses, rejects, alerts });
}

function payloadCapOf(opts: ProcessorOptions): number {
  return opts.rejectPayloadCap ?? DEFAULT_REJECT_PAYLOAD_CAP;
}

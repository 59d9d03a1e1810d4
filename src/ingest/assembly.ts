/**
 * The ingest assembly, built in one place for `serve` and `replay`: the processor's
 * options from the settings both share, and for serve the accounting, the pipeline that
 * writes through the processor and the intake in front of it (docs/architecture.md,
 * "The data path"). The commands only say where the parts come from.
 */
import type postgres from "postgres";
import type { DecodeOptions, Decoder } from "../core/decode.ts";
import type { Inbound } from "../core/message.ts";
import type { Logger } from "../log.ts";
import { PartitionCover } from "../db/partition_cover.ts";
import type { PartitionInterval } from "../db/partitions.ts";
import { Accounting } from "./accounting.ts";
import { coverBatch, logBackfill } from "./backfill.ts";
import { DeviceCache } from "./device_cache.ts";
import { FeedCache } from "./feed_cache.ts";
import { createIntake, type Intake } from "./intake.ts";
import type { IngestMetrics } from "./metrics.ts";
import { Pipeline, type PipelineOptions } from "./pipeline.ts";
import { processBatch, type ProcessorOptions } from "./processor.ts";
import { type TenantCache, tenantCacheFor } from "./tenant_cache.ts";
import { logMemoryBudget } from "./memory_budget.ts";
import { DEFAULT_FEED_CACHE_SIZE, lookupCacheSizes } from "./cache_sizes.ts";
import { DEFAULT_CAREFUL_MS, FastOrCareful } from "./write/fast_or_careful.ts";
import { DEFAULT_SPARKPLUG_CACHE_SIZE, SparkplugCache } from "./write/sparkplug_state.ts";

export { reprocessOnRegister } from "./reprocess.ts"; // serve's background re-processing

/** The processor settings `serve` and `replay` share (src/cli/option_groups.ts). */
export interface ProcessorSettings {
  autoRegister: boolean;
  rejectPayloadCap: number;
  acceptUnregisteredDevices: boolean;
  feedCacheTtlMs: number;
  feedCacheSize: number;
  /** Do everything, then roll back (`replay --dry-run`). */
  dryRun?: boolean;
  /** A Sparkplug BIRTH creates its device and feeds (`--sparkplug-register`). */
  sparkplugRegister?: boolean;
  /**
   * The partition settings (src/cli/option_groups.ts `partitionOptions`): given, old
   * readings get range partitions made before their batch (src/ingest/backfill.ts).
   */
  partitionInterval?: PartitionInterval;
  /** `--retention`: its raw tier (rollups' tiers are applied by partition upkeep). */
  retention?: { rawMs: number | null } | null;
  partitionUpkeep?: boolean;
  /** `--rollups`: the widths kept in feed_rollups (src/ingest/write/rollups.ts); null: off. */
  rollups?: readonly { interval: string }[] | null;
}

/** The processor's options, with the partition cover serve and replay run before a batch. */
export type AssembledProcessorOptions = ProcessorOptions & { backfill?: PartitionCover };

/** What the processor gets besides the settings. */
export interface ProcessorParts {
  /** The feed cache (serve's listens for changes, src/ingest/feed_notify.ts); default: a new one. */
  feedCache?: FeedCache;
  /** Counts a batch rewritten the careful way; given, the processor keeps a write path of its own. */
  onCarefulRewrite?: () => void;
  /** The device cache (serve's is confirmed like the feed cache); default: a new one. */
  deviceCache?: DeviceCache;
  /** The tenant alias cache (serve's listens for changes); default: a new one. */
  tenantCache?: TenantCache;
}

/** The processor's options, as serve and replay run it. */
export function processorOptionsOf(
  settings: ProcessorSettings,
  parts: ProcessorParts = {},
): AssembledProcessorOptions {
  const ttlMs = settings.feedCacheTtlMs;
  const sizes = lookupCacheSizes(settings.feedCacheSize);
  const { autoRegister, rejectPayloadCap, onCarefulRewrite } = { ...settings, ...parts };
  return {
    autoRegister,
    rejectPayloadCap,
    feedCache: parts.feedCache ?? new FeedCache({ ttlMs, maxEntries: sizes.feeds }),
    // Readings need their device registered, as statuses do (auto-register creates it).
    requireDevice: !autoRegister && !settings.acceptUnregisteredDevices,
    deviceCache: parts.deviceCache ?? new DeviceCache({ ttlMs, maxEntries: sizes.devices }),
    tenantCache: parts.tenantCache ??
      tenantCacheFor({ ttlMs, maxEntries: settings.feedCacheSize }),
    sparkplug: {
      // A birth's metric table never changes (src/ingest/write/sparkplug_state.ts): kept long.
      cache: new SparkplugCache({ ttlMs: 600_000, maxEntries: DEFAULT_SPARKPLUG_CACHE_SIZE }),
      register: settings.sparkplugRegister ?? false,
    },
    ...(settings.dryRun ? { dryRun: true } : {}),
    // A dry run makes no partition: it writes nothing anywhere.
    ...(settings.partitionInterval && !settings.dryRun
      ? {
        backfill: new PartitionCover({
          interval: settings.partitionInterval,
          retentionMs: settings.retention?.rawMs ?? null,
          upkeep: settings.partitionUpkeep ?? true,
        }),
      }
      : {}),
    ...(settings.rollups ? { rollups: settings.rollups.map((w) => w.interval) } : {}),
    ...(onCarefulRewrite
      ? { fastOrCareful: new FastOrCareful(DEFAULT_CAREFUL_MS, onCarefulRewrite) }
      : {}),
  };
}

/** What serve's ingest path is built from. */
export interface IngestAssemblyOptions {
  sql: postgres.Sql;
  processor: ProcessorOptions;
  /**
   * Batching and queue sizes (src/cli/serve_options.ts `batchingOf`), and whether the
   * queues keep rejects whole (`--capture` writes every message whole).
   */
  batching: Omit<PipelineOptions, "write" | "log" | "metrics" | "accounting"> & {
    keepsWholePayloads?: boolean;
  };
  decode: DecodeOptions;
  /** Replaces the decoder (tests; guarded all the same). */
  decoder?: Decoder;
  log: Logger;
  metrics: IngestMetrics;
  /** A QoS 0 message dropped on a full queue (the capture file keeps it). */
  onQueueFull?(inbound: Inbound): void;
  /** Feedline failed on a message before it was queued (the flood log). */
  onInternalError?(topic: string, error: unknown): void;
}

/** Serve's ingest path: the intake (the source's callbacks) → the pipeline → the processor. */
export interface IngestAssembly {
  accounting: Accounting;
  pipeline: Pipeline;
  intake: Intake;
}

/** Builds serve's ingest path; nothing runs until `pipeline.start()`. */
export function assembleIngest(opts: IngestAssemblyOptions): IngestAssembly {
  const { sql, processor, log, metrics } = opts;
  const backfill = (processor as AssembledProcessorOptions).backfill;
  const report = logBackfill(log);
  const accounting = new Accounting(metrics);
  const { queueBytes = Infinity, maxBatchBytes = Infinity } = opts.batching;
  logMemoryBudget(log, {
    queueBytes,
    maxBatchBytes,
    feedCacheSize: processor.feedCache?.maxEntries ?? DEFAULT_FEED_CACHE_SIZE,
  });
  const pipeline = new Pipeline({
    write: async (batch) => {
      if (backfill) await coverBatch(sql, backfill, batch, report);
      return await processBatch(sql, batch, processor);
    },
    ...opts.batching,
    log,
    metrics,
    accounting,
  });
  const intake = createIntake({
    pipeline,
    accounting,
    decode: opts.decode,
    decoder: opts.decoder,
    onQueueFull: opts.onQueueFull,
    onInternalError: opts.onInternalError,
    ...(opts.batching.keepsWholePayloads ? {} : { rejectPayloadCap: processor.rejectPayloadCap }),
  });
  return { accounting, pipeline, intake };
}

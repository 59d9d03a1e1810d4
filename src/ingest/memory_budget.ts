/**
 * serve's memory budget (docs/performance.md, "Memory budget"): the most its bounded
 * structures hold, the V8 heap limits that keep the garbage collector's headroom in
 * proportion to them, and the peak resident memory that follows. Pure arithmetic; serve
 * logs it at start, `deno task bench` runs serve with its V8 flags and checks the
 * measured peak against it.
 */
import v8 from "node:v8";
import type { Logger } from "../log.ts";
import { lookupCacheBytes } from "./cache_sizes.ts";

const MIB = 1024 * 1024;

/** The configured bounds the budget follows. */
export interface MemoryBounds {
  /** `--queue-bytes`: the data queue; the status queue holds a quarter of it. */
  queueBytes: number;
  /** `--max-batch-bytes`: the batch being written. */
  maxBatchBytes: number;
  /** `--feed-cache-size`: feeds cached (and from it, devices and tenants: cache_sizes.ts). */
  feedCacheSize: number;
}

/**
 * Resident memory outside V8's heap and the payloads: the Deno runtime and V8's code,
 * ICU data, socket buffers. Measured: peak RSS less the old-space limit and the young
 * generation when both were full (docs/performance.md, "Memory budget").
 */
export const NATIVE_MB = 48;
/** Live heap of a running serve with nothing held: modules, clients, one batch's work. */
export const OLD_SPACE_BASE_MB = 64;
/**
 * V8's young generation is three semi-spaces (two and the new large-object space); V8
 * grows them to 3 × 32 MB under a high allocation rate unless told otherwise.
 */
export const SEMI_SPACE_MB = 8;
/**
 * How far V8 lets the old space grow past what survived its last full collection (100:
 * to twice that). Below a 256 MB limit V8 grows it by only ~10 %, and collected so often
 * that serve's CPU per message rose by half (docs/performance.md).
 */
export const HEAP_GROWING_PERCENT = 100;

/** The budget, term by term, in MB. */
export interface MemoryBudget {
  /** Queued messages (data and status queues), as the byte bounds count them. */
  queuesMb: number;
  /** The batch being written, as the byte bound counts it. */
  batchMb: number;
  /**
   * The lookup caches (src/ingest/cache_sizes.ts): feeds and devices in typed arrays off the
   * V8 heap, tenant aliases in a map on it.
   */
  cachesMb: number;
  /** Of `cachesMb`, what is off the V8 heap (counted in the peak, not the old space). */
  cachesOffHeapMb: number;
  /** `--max-old-space-size`: the base, the held messages, the writer's work and the caches. */
  oldSpaceMb: number;
  /** The young generation (3 × --max-semi-space-size). */
  youngMb: number;
  /** The bound on peak resident memory: native + old space + young + payloads. */
  peakRssMb: number;
  /** The V8 flags that set the heap limits. */
  v8Flags: string;
}

/**
 * The budget of `bounds`. The old-space limit must hold everything that may be live at
 * once, or V8 stops the process, so it counts every held byte as heap (and the batch twice:
 * the SQL parameters the writer builds from it), although a payload itself lives outside
 * the heap (an ArrayBuffer). The peak adds the payloads once more, outside the heap, and
 * the compact caches' typed arrays (allocated whole at start): a bound, not an estimate
 * (the bench measures how far below it serve stays).
 */
export function memoryBudget(bounds: MemoryBounds): MemoryBudget {
  const queuesMb = (bounds.queueBytes * 1.25) / MIB;
  const batchMb = bounds.maxBatchBytes / MIB;
  const caches = lookupCacheBytes(bounds.feedCacheSize);
  const cachesOffHeapMb = caches.offHeap / MIB;
  const cachesMb = cachesOffHeapMb + caches.heap / MIB;
  const oldSpaceMb = Math.ceil(
    OLD_SPACE_BASE_MB + queuesMb + 2 * batchMb + caches.heap / MIB,
  );
  const youngMb = 3 * SEMI_SPACE_MB;
  const peakRssMb = Math.ceil(
    NATIVE_MB + oldSpaceMb + youngMb + queuesMb + batchMb + cachesOffHeapMb,
  );
  const v8Flags = [
    `--max-old-space-size=${oldSpaceMb}`,
    `--max-semi-space-size=${SEMI_SPACE_MB}`,
    `--heap-growing-percent=${HEAP_GROWING_PERCENT}`,
  ].join(",");
  return {
    ...{ queuesMb, batchMb, cachesMb, cachesOffHeapMb },
    ...{ oldSpaceMb, youngMb, peakRssMb, v8Flags },
  };
}

/** V8's heap limit of this process (old space and young generation), in MB. */
export function heapLimitMb(): number {
  return v8.getHeapStatistics().heap_size_limit / MIB;
}

/**
 * One line at start: the budget of the configured bounds, and whether this process runs
 * with the heap limits that make it hold (they can only be given at start, as
 * `--v8-flags`; `deno task serve` does).
 */
export function logMemoryBudget(log: Logger, bounds: MemoryBounds): void {
  const budget = memoryBudget(bounds);
  const limitMb = Math.round(heapLimitMb());
  const fields = {
    peak_rss_mb: budget.peakRssMb,
    heap_limit_mb: limitMb,
    v8_flags: budget.v8Flags,
  };
  if (limitMb > budget.oldSpaceMb + budget.youngMb + 8) {
    log.info(
      "V8's heap limits are not set from the bounds, so peak memory may pass the budget; " +
        "run with --v8-flags=<v8_flags> or DENO_V8_FLAGS (docs/performance.md, Memory budget)",
      fields,
    );
  } else {
    log.info("memory budget", fields);
  }
}

/**
 * What the processor knows about a feed once it is looked up (src/ingest/write/lookups.ts),
 * as the feed cache (src/ingest/feed_cache.ts) gives it back.
 */

/** What the processor needs to know about a feed. */
export interface FeedInfo {
  id: number;
  isActive: boolean;
  thresholdMin: number | null;
  thresholdMax: number | null;
  /** Present only for a feed with alert rules (sql/010): most feeds carry nothing more. */
  alerts?: FeedAlertRules;
}

/**
 * A feed's alert settings (docs/operations.md, "Alerts"): its threshold mode `alert` and
 * what goes with it, or a `max_silence` (a stale alert its next reading closes).
 */
export interface FeedAlertRules {
  /** `threshold_mode = 'alert'`: a reading out of range is stored and opens an alert. */
  alertMode: boolean;
  /** `threshold_hysteresis`: the band to re-enter before an alert closes (0: none). */
  hysteresis: number;
  /** `threshold_min_duration` in µs: how long the value stays out before it opens (0: at once). */
  minDurationUs: number;
  /** `max_silence` is set: the silence check may have opened a stale alert. */
  watchesSilence: boolean;
}

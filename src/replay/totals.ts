/**
 * What a replay did, counted as it goes, and its end-of-run summary (text or JSON).
 */
import type { BatchResult } from "../ingest/processor.ts";

/** Running totals of a replay. */
export interface ReplayTotals {
  mode: "database" | "rejects" | "publish";
  /** Every batch was rolled back. */
  dryRun: boolean;
  /** Messages read (from files, or from ingest_rejects). */
  messages: number;
  /** Lines that are not messages (broken JSON, missing topic, ...). */
  badLines: number;
  /** Messages outside --since / --until / --topic. */
  filtered: number;
  /** Messages given to the processor (or published). read = filtered + processed. */
  processed: number;
  /**
   * What became of each processed message: processed = stored + rejected + skipped.
   * `stored` counts a message whose readings or status are in the database, also as
   * absorbed duplicates.
   */
  outcomes: { stored: number; rejected: number; skipped: number };
  /** Readings stored (a many-feeds message holds several). */
  stored: number;
  /** Readings already stored: absorbed by the (feed_id, created_at) key. */
  duplicates: number;
  /** Status messages applied. */
  statuses: number;
  /** Readings skipped, by reason (duplicates counted above). */
  skipped: Record<string, number>;
  /** Rejects written, by reason (one per message and reason). */
  rejected: Record<string, number>;
  /** --publish: messages the broker took (QoS 1/2 acknowledged, QoS 0 sent). */
  published: number;
  /** --publish: messages that could not be sent. */
  publishFailed: number;
  /** --rejects: re-processed messages that no longer have an ingest_rejects row. */
  rejectsCleared: number;
  /** --rejects: rows whose payload was capped when stored, so cannot be re-processed. */
  rejectsUnreplayable: number;
  /**
   * Messages with no time of their own: read from a line without one (`mosquitto_sub -v`),
   * and readings or a status without a device timestamp, or a reject (its dead-letter row
   * is keyed by the receive time). Replaying them again stores them again.
   */
  untimed: number;
  /** feed_values partitions made for the readings' times (src/ingest/backfill.ts). */
  partitionsCreated: string[];
  /** --strict: where the replay stopped. */
  stoppedAt: string | null;
  elapsedMs: number;
  /** Peak resident set size of this process, in bytes. */
  peakRssBytes: number;
}

/** Empty totals. */
export function newTotals(mode: ReplayTotals["mode"], dryRun = false): ReplayTotals {
  return {
    mode,
    dryRun,
    messages: 0,
    badLines: 0,
    filtered: 0,
    processed: 0,
    outcomes: { stored: 0, rejected: 0, skipped: 0 },
    stored: 0,
    duplicates: 0,
    statuses: 0,
    skipped: {},
    rejected: {},
    published: 0,
    publishFailed: 0,
    rejectsCleared: 0,
    rejectsUnreplayable: 0,
    untimed: 0,
    partitionsCreated: [],
    stoppedAt: null,
    elapsedMs: 0,
    peakRssBytes: 0,
  };
}

/** Adds one batch's result. */
export function addBatch(totals: ReplayTotals, result: BatchResult): void {
  totals.processed += result.messages;
  totals.outcomes.stored += result.outcomes.stored;
  totals.outcomes.rejected += result.outcomes.rejected;
  totals.outcomes.skipped += result.outcomes.skipped;
  totals.stored += result.stored;
  totals.statuses += result.statuses;
  for (const [reason, n] of Object.entries(result.skipped)) {
    if (reason === "duplicate") totals.duplicates += n;
    else totals.skipped[reason] = (totals.skipped[reason] ?? 0) + n;
  }
  for (const [reason, n] of Object.entries(result.rejected)) {
    totals.rejected[reason] = (totals.rejected[reason] ?? 0) + n;
  }
}

/**
 * Peak resident set size: VmHWM from /proc on Linux, else the current RSS (a lower
 * bound).
 */
export function peakRssBytes(): number {
  try {
    const status = Deno.readTextFileSync("/proc/self/status");
    const kb = /^VmHWM:\s+(\d+) kB/m.exec(status);
    if (kb) return Number(kb[1]) * 1024;
  } catch {
    // Not Linux: fall through.
  }
  return Deno.memoryUsage().rss;
}

/** Messages per second over the whole run. */
export function rate(totals: ReplayTotals): number {
  return totals.elapsedMs > 0 ? Math.round(totals.processed / (totals.elapsedMs / 1000)) : 0;
}

const int = new Intl.NumberFormat("en-US");

function byReason(map: Record<string, number>): string {
  const entries = Object.entries(map).sort((a, b) => b[1] - a[1]);
  if (entries.length === 0) return "0";
  const sum = entries.reduce((s, [, n]) => s + n, 0);
  return `${int.format(sum)} (${entries.map(([r, n]) => `${r} ${int.format(n)}`).join(", ")})`;
}

/** The summary, as lines for a person. */
export function formatSummary(t: ReplayTotals): string {
  const dry = t.dryRun;
  const row = (label: string, text: string) => `  ${label.padEnd(16)}${text}`;
  const lines = [
    dry ? "replay summary (dry run: every batch was rolled back)" : "replay summary",
    row(
      "read",
      `${int.format(t.messages)} messages` +
        (t.badLines > 0 ? `, ${int.format(t.badLines)} bad lines` : ""),
    ),
  ];
  if (t.filtered > 0) lines.push(row("filtered out", int.format(t.filtered)));
  if (t.mode === "publish") {
    lines.push(row("published", int.format(t.published)));
    if (t.publishFailed > 0) lines.push(row("failed", int.format(t.publishFailed)));
  } else {
    // Messages first (they add up: processed = stored + rejected + skipped), then what the
    // stored ones held: readings (a many-feeds message holds several) and status events.
    const o = t.outcomes;
    lines.push(
      row(
        "processed",
        `${int.format(t.processed)} messages: ${int.format(o.stored)} ${
          dry ? "would be stored" : "stored"
        }, ${int.format(o.rejected)} rejected, ${int.format(o.skipped)} skipped`,
      ),
      row(
        dry ? "would store" : "stored",
        `${int.format(t.stored)} readings, ${int.format(t.statuses)} status events`,
      ),
      row("duplicates", `${int.format(t.duplicates)} readings (already stored, absorbed)`),
      row("skipped", `${byReason(t.skipped)} readings or statuses`),
      row(dry ? "would reject" : "rejected", `${byReason(t.rejected)} messages`),
    );
  }
  if (t.mode === "rejects") {
    lines.push(
      row(dry ? "would clear" : "rejects cleared", `${int.format(t.rejectsCleared)} messages`),
    );
    if (t.rejectsUnreplayable > 0) {
      lines.push(
        row("left in place", `${int.format(t.rejectsUnreplayable)} (payload capped when stored)`),
      );
    }
  }
  if (t.partitionsCreated.length > 0) {
    lines.push(row("partitions", `created ${t.partitionsCreated.join(", ")}`));
  }
  if (t.stoppedAt) lines.push(row("stopped at", `${t.stoppedAt} (--strict)`));
  if (t.untimed > 0) lines.push(untimedWarning(t.untimed));
  lines.push(
    row(
      "elapsed",
      `${(t.elapsedMs / 1000).toFixed(1)} s, ${int.format(rate(t))} messages/s, ` +
        `peak RSS ${Math.round(t.peakRssBytes / 1048576)} MiB`,
    ),
  );
  return lines.join("\n");
}

/** The warning about messages a second replay would store again. */
export function untimedWarning(n: number): string {
  const has = n === 1 ? " has no time of its own" : "s have no time of their own";
  return `warning: ${int.format(n)} message${has} (no device ts, and the input no receive ` +
    "time); replaying them again will store their readings, status events or rejects again";
}

/** The summary as one JSON object (with `messagesPerSec`). */
export function summaryJson(t: ReplayTotals): string {
  return JSON.stringify({ ...t, messagesPerSec: rate(t) });
}

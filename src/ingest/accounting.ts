/**
 * The accounting of messages (docs/delivery.md, "Where every message ends"). Every
 * message that reaches feedline ends in exactly one term, and every term is counted
 * here and nowhere else:
 *
 *   received = stored + rejected + skipped + dropped + discarded + queued + in flight
 *
 * The counters are the pipeline's metrics (src/ingest/metrics.ts), so `/metrics` shows
 * the same numbers; the intake counts what arrives and what it drops, the pipeline what
 * its batches commit and what a shutdown abandons.
 */
import type { DiscardReason, DropReason, IngestMetrics } from "./metrics.ts";
import { DISCARD_REASONS, DROP_REASONS } from "./metrics.ts";
import { REJECT_REASONS, type RejectReason } from "../core/message.ts";

/** The terms of the equation at one moment, and whether they balance. */
export interface AccountingTerms {
  received: number;
  stored: number;
  rejected: number;
  skipped: number;
  dropped: number;
  discarded: number;
  queued: number;
  inFlight: number;
  balanced: boolean;
}

/** The terms from the metrics, with what is queued and in flight now. Pure. */
export function accountingTerms(
  m: IngestMetrics,
  queued: number,
  inFlight: number,
): AccountingTerms {
  const terms = {
    received: m.received.total(),
    stored: m.outcomes.get({ outcome: "stored" }),
    rejected: m.outcomes.get({ outcome: "rejected" }),
    skipped: m.outcomes.get({ outcome: "skipped" }),
    dropped: m.dropped.total(),
    discarded: m.discarded.total(),
    queued,
    inFlight,
  };
  const accounted = terms.stored + terms.rejected + terms.skipped + terms.dropped +
    terms.discarded + terms.queued + terms.inFlight;
  return { ...terms, balanced: accounted === terms.received };
}

/** Where the terms are counted. */
export class Accounting {
  readonly metrics: IngestMetrics;

  constructor(metrics: IngestMetrics) {
    this.metrics = metrics;
  }

  /** Messages that reached feedline. */
  received(n = 1): void {
    this.metrics.received.inc(undefined, n);
  }

  /** Messages given up and lost (QoS 0, or feedline failing before queueing). */
  dropped(reason: DropReason, n = 1): void {
    if (n > 0) this.metrics.dropped.inc({ reason }, n);
  }

  /**
   * Messages not written, losing nothing: a copy of a message held or written
   * (`redelivered`), or one left unacknowledged with the broker at shutdown.
   */
  discarded(reason: DiscardReason, n = 1): void {
    if (n > 0) this.metrics.discarded.inc({ reason }, n);
  }

  /** A committed batch: one outcome per message. */
  committed(outcomes: { stored: number; rejected: number; skipped: number }): void {
    const { processed, outcomes: counter } = this.metrics;
    processed.inc(undefined, outcomes.stored + outcomes.rejected + outcomes.skipped);
    counter.inc({ outcome: "stored" }, outcomes.stored);
    counter.inc({ outcome: "rejected" }, outcomes.rejected);
    counter.inc({ outcome: "skipped" }, outcomes.skipped);
  }

  /** The terms now, given what is queued and in flight. */
  terms(queued: number, inFlight: number): AccountingTerms {
    return accountingTerms(this.metrics, queued, inFlight);
  }

  /** Rows written to ingest_rejects by reason (only reasons that occurred), for the final line. */
  rejectsByReason(): Partial<Record<RejectReason, number>> {
    const out: Partial<Record<RejectReason, number>> = {};
    for (const reason of REJECT_REASONS) {
      const n = this.metrics.rejected.get({ reason });
      if (n > 0) out[reason] = n;
    }
    return out;
  }

  /** Dropped and discarded by reason, for the final log line. */
  byReason(): { dropped: Record<DropReason, number>; discarded: Record<DiscardReason, number> } {
    const get = <R extends string>(c: typeof this.metrics.dropped, reasons: readonly R[]) =>
      Object.fromEntries(reasons.map((reason) => [reason, c.get({ reason })])) as Record<R, number>;
    return {
      dropped: get(this.metrics.dropped, DROP_REASONS),
      discarded: get(this.metrics.discarded, DISCARD_REASONS),
    };
  }
}

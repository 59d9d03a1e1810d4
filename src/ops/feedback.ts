/**
 * Feedback to publishers: every rejected message is also published, QoS 0, on an errors
 * topic of its user (default `{user_id}/errors`), so a device developer can subscribe and
 * see why a reading was not stored. Rate-limited per user (a token bucket) and in total,
 * so a flood of bad traffic cannot turn feedline into an amplifier; what is held back is
 * counted and reported in the user's next message (`suppressed`).
 *
 * Publishing never waits: QoS 0 needs no acknowledgement (MQTT 5 §4.3.1), and while the
 * client is disconnected the message is dropped and counted rather than queued.
 */
import { isUuid } from "../core/decode.ts";
import type { Counter } from "../prometheus.ts";
import type { RejectDetail } from "../ingest/processor.ts";
import type { TopicRouter } from "../core/topics.ts";

/** The placeholder the errors topic template must contain. */
const USER = "{user_id}";
/** Users tracked at once; beyond it, rejects of new users are rate-limited. */
const MAX_TRACKED_USERS = 10_000;
/** Feedback messages per second over all users. */
const GLOBAL_PER_SECOND = 1000;

/** Options of the feedback publisher. */
export interface ErrorFeedbackOptions {
  template: string;
  perUserPerMinute: number;
  router: TopicRouter;
  counter: Counter;
  /** Publishes QoS 0 without waiting; false when not connected. */
  publish(topic: string, payload: string): boolean;
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
  suppressed: number;
}

/** Publishes reject feedback, rate-limited. */
export class ErrorFeedback {
  readonly #opts: ErrorFeedbackOptions;
  readonly #buckets = new Map<string, Bucket>();
  #global: Bucket;

  constructor(opts: ErrorFeedbackOptions) {
    this.#opts = opts;
    this.#global = { tokens: GLOBAL_PER_SECOND, at: this.#now(), suppressed: 0 };
    for (const outcome of ["published", "rate_limited", "no_user", "not_connected"]) {
      opts.counter.init({ outcome });
    }
  }

  #now(): number {
    return this.#opts.now?.() ?? Date.now();
  }

  /** Publishes feedback for each reject (subject to the limits). */
  report(rejects: readonly RejectDetail[]): void {
    for (const r of rejects) this.#reportOne(r);
  }

  #reportOne(r: RejectDetail): void {
    const { counter } = this.#opts;
    // One errors topic per user: a user id in the topic may be in upper case, and
    // feedback goes to the lower-case form the database keeps. Only a real tenant (a
    // UUID) gets feedback: an arbitrary first level would let anyone make feedline
    // publish anywhere.
    const user = (r.userId ?? this.#opts.router.match(r.topic)?.userId ?? "").toLowerCase();
    if (!isUuid(user)) {
      counter.inc({ outcome: "no_user" });
      return;
    }
    const now = this.#now();
    const bucket = this.#bucketOf(user, now);
    if (!bucket || !take(bucket, now, this.#opts.perUserPerMinute, 60_000)) {
      if (bucket) bucket.suppressed++;
      counter.inc({ outcome: "rate_limited" });
      return;
    }
    if (!take(this.#global, now, GLOBAL_PER_SECOND, 1000)) {
      bucket.tokens += 1; // not this user's fault
      bucket.suppressed++;
      counter.inc({ outcome: "rate_limited" });
      return;
    }
    const payload = JSON.stringify({
      topic: r.topic,
      reason: r.reason,
      detail: r.detail,
      received_at: new Date(Math.floor(r.receivedAtUs / 1000)).toISOString(),
      suppressed: bucket.suppressed,
    });
    if (!this.#opts.publish(this.#opts.template.replaceAll(USER, user), payload)) {
      counter.inc({ outcome: "not_connected" });
      return;
    }
    bucket.suppressed = 0;
    counter.inc({ outcome: "published" });
  }

  #bucketOf(user: string, now: number): Bucket | null {
    let bucket = this.#buckets.get(user);
    if (bucket) return bucket;
    if (this.#buckets.size >= MAX_TRACKED_USERS) {
      // Forget users whose bucket has refilled: they lose nothing by being forgotten.
      const full = 60_000; // a bucket refills completely within a minute
      for (const [u, b] of this.#buckets) {
        if (now - b.at >= full && b.suppressed === 0) this.#buckets.delete(u);
      }
      if (this.#buckets.size >= MAX_TRACKED_USERS) return null;
    }
    bucket = { tokens: this.#opts.perUserPerMinute, at: now, suppressed: 0 };
    this.#buckets.set(user, bucket);
    return bucket;
  }
}

/** Token bucket: `capacity` tokens, refilled evenly over `periodMs`. */
function take(bucket: Bucket, now: number, capacity: number, periodMs: number): boolean {
  const elapsed = now - bucket.at;
  if (elapsed > 0) {
    bucket.tokens = Math.min(capacity, bucket.tokens + (elapsed * capacity) / periodMs);
    bucket.at = now;
  }
  if (bucket.tokens < 1) return false;
  bucket.tokens -= 1;
  return true;
}

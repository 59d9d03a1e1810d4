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
import { UserRateLimit } from "./rate_limit.ts";

/** The placeholder the errors topic template must contain. */
const USER = "{user_id}";
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

/** Publishes reject feedback, rate-limited. */
export class ErrorFeedback {
  readonly #opts: ErrorFeedbackOptions;
  readonly #limit: UserRateLimit;

  constructor(opts: ErrorFeedbackOptions) {
    this.#opts = opts;
    this.#limit = new UserRateLimit(opts.perUserPerMinute, GLOBAL_PER_SECOND, this.#now());
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
    const bucket = this.#limit.take(user, this.#now());
    if (!bucket) {
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
}

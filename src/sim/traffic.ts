/**
 * The traffic of a simulated fleet: the topic and payload codecs of decode.ts and
 * payload.ts run in reverse. Each call to `next` makes one message (a reading in one of
 * the payload formats of docs/topics-and-payloads.md, an out-of-range spike, or, with a bad ratio, a
 * message built to be rejected for one reason), all drawn from a seeded generator:
 * the same seed and the same model times give the same messages.
 */
import { createFeedModel, drifting, type FeedModel, type ModelValue } from "./feed_models.ts";
import type { Fleet, FleetDevice, FleetFeed } from "./fleet.ts";
import {
  PAYLOAD_FORMATS,
  type PayloadFormat,
  REJECT_REASONS,
  type RejectReason,
} from "../core/message.ts";
import { createRng, type Rng } from "./prng.ts";
import { formatTopic } from "../core/topics.ts";

/** Payload formats of good readings (declared in the core, with the message model). */
export { PAYLOAD_FORMATS, type PayloadFormat };

/** What a message is: `mapped` is one of another format (`--format`, src/sim/formats.ts). */
export type TrafficKind = PayloadFormat | "spike" | "bad" | "mapped";

/**
 * The reject reasons one bad message of a publisher causes: all but `db_rejected`, which
 * needs a database that refuses a valid row, `internal_error`, which is a bug of ours,
 * `value_conflict`, which needs two messages with one key, `unknown_tenant`, which needs
 * a mappings file (the templates name the user by id), and the Sparkplug ones, which need
 * a Sparkplug payload (`--format sparkplug` makes its own traffic). Bad messages take them
 * in this order.
 */
export type BadReason = Exclude<
  RejectReason,
  | "db_rejected"
  | "internal_error"
  | "value_conflict"
  | "unknown_tenant"
  | "sparkplug_unknown_alias"
  | "sparkplug_unsupported_type"
>;
const NOT_BAD: ReadonlySet<RejectReason> = new Set([
  "db_rejected",
  "internal_error",
  "value_conflict",
  "unknown_tenant",
  "sparkplug_unknown_alias",
  "sparkplug_unsupported_type",
]);
export const BAD_REASONS: readonly BadReason[] = REJECT_REASONS.filter((r): r is BadReason =>
  !NOT_BAD.has(r)
);

/** One message to publish. */
export interface SimMessage<P extends string | Uint8Array = string | Uint8Array> {
  topic: string;
  /** Text in feedline's own formats; bytes in some of `--format`'s (CBOR). */
  payload: P;
  /** Index into `fleet.devices`: whose connection publishes it. */
  device: number;
  kind: TrafficKind;
  /** For spikes and bad messages: the reject reason serve should record. */
  reason?: BadReason;
  /** Readings a good message carries (a many-feeds message carries several). */
  readings: number;
}

/** Topic templates, as serve is configured (`--feed-topic` ...). */
export interface TopicTemplates {
  feed: string;
  feeds: string;
  status: string;
}

/** What the traffic is made of. */
export interface TrafficOptions {
  fleet: Fleet;
  templates: TopicTemplates;
  formats: readonly PayloadFormat[];
  /** Share of messages built to be rejected, 0..1. */
  badRatio: number;
  /** Share of single-feed readings of feeds with thresholds sent far out of range, 0..1. */
  spikeRatio: number;
  /** serve's `--max-payload-bytes`: a too_large message is one byte over it. */
  maxPayloadBytes: number;
  /**
   * The feeds' threshold mode as registered: with `alert`, a spike is a stored reading that
   * opens an alert, not an `out_of_range` reject (docs/operations.md, "Alerts").
   */
  thresholdMode?: "reject" | "alert";
  /** Share of feeds with thresholds whose values drift out of range and back, 0..1. */
  driftRatio?: number;
  /** Share of devices that fall silent, 0..1 (one device at least keeps publishing). */
  silentRatio?: number;
  /** Model time after the first message at which they fall silent, µs. */
  silentAfterUs?: number;
}

/** A traffic generator. */
export interface Traffic<P extends string | Uint8Array = string | Uint8Array> {
  /** The next message, its readings taken at model time `tUs` (µs since the epoch). */
  next(tUs: number): SimMessage<P>;
  /** The bad reasons this fleet can produce (out_of_range needs a feed with thresholds). */
  readonly reasons: readonly BadReason[];
}

/** ISO 8601 with microseconds: exact, so two readings of a feed never share a timestamp. */
export function isoMicros(tUs: number): string {
  const ms = Math.floor(tUs / 1000);
  return `${new Date(ms).toISOString().slice(0, 23)}${String(tUs - ms * 1000).padStart(3, "0")}Z`;
}

function valueJson(v: ModelValue): string {
  return v.text !== undefined ? JSON.stringify(v.text) : String(v.value);
}

function valuePlain(v: ModelValue): string {
  return v.text ?? String(v.value);
}

/**
 * Creates the traffic generator of a fleet, its randomness from `seed`.
 *
 * @example
 * ```ts
 * const traffic = createTraffic(1, { fleet, templates: DEFAULT_TEMPLATES, formats: ["plain"],
 *   badRatio: 0, spikeRatio: 0, maxPayloadBytes: 65536 });
 * traffic.next(Date.now() * 1000).topic; // "<uuid>/esp32-1a2b3c/feeds/esp32-1a2b3c-battery"
 * ```
 */
export function createTraffic(seed: number, opts: TrafficOptions): Traffic<string> {
  const rng = createRng(seed, 2);
  const { fleet, templates } = opts;
  if (fleet.devices.some((d) => d.feeds.length === 0)) {
    throw new Error("createTraffic: every device needs a feed");
  }
  const models = new Map<FleetFeed, FeedModel>();
  for (const device of fleet.devices) {
    for (const feed of device.feeds) models.set(feed, createFeedModel(feed.kind, rng));
  }
  const hasRange = (f: FleetFeed) => f.thresholdMin !== null || f.thresholdMax !== null;
  const ranged = fleet.devices.flatMap((d, i) =>
    d.feeds.filter(hasRange).map((feed) => ({ device: i, feed }))
  );
  const alertMode = opts.thresholdMode === "alert";
  // Spikes in alert mode are stored readings, so a bad message cannot be out of range.
  const reasons = BAD_REASONS.filter((r) =>
    r !== "out_of_range" || (ranged.length > 0 && !alertMode)
  );
  let nextReason = 0;
  // Drifting feeds and silent devices come from a stream of their own, so turning them on
  // changes nothing else of the traffic.
  const pickRng = createRng(seed, 4);
  for (
    const { feed } of shuffled(ranged, pickRng).slice(0, chosen(ranged.length, opts.driftRatio))
  ) {
    const range = { min: feed.thresholdMin, max: feed.thresholdMax };
    models.set(feed, drifting(models.get(feed)!, range, pickRng.next()));
  }
  const everyDevice = fleet.devices.map((_, i) => i);
  const silentCount = Math.min(
    chosen(everyDevice.length, opts.silentRatio),
    everyDevice.length - 1,
  );
  const silent = new Set(shuffled(everyDevice, pickRng).slice(0, silentCount));
  const awake = everyDevice.filter((i) => !silent.has(i));
  const silentAfterUs = opts.silentAfterUs ?? 0;
  let firstUs: number | null = null;
  /** A device to publish at model time `tUs`: one still awake once the silent ones went quiet. */
  const pickDevice = (tUs: number) => {
    firstUs ??= tUs;
    if (silent.size === 0 || tUs - firstUs < silentAfterUs) return rng.int(fleet.devices.length);
    return awake[rng.int(awake.length)];
  };

  const feedTopic = (d: FleetDevice, key: string, user = d.userId, code = d.code) =>
    formatTopic(templates.feed, { user_id: user, device_code: code, feed_key: key });
  const statusTopic = (d: FleetDevice, code = d.code) =>
    formatTopic(templates.status, { user_id: d.userId, device_code: code });

  function spikeOf(device: number, feed: FleetFeed): SimMessage<string> {
    const d = fleet.devices[device];
    const v = models.get(feed)!.spike()!;
    const topic = feedTopic(d, feed.key);
    if (alertMode) return { topic, payload: valuePlain(v), device, kind: "spike", readings: 1 };
    return {
      topic,
      payload: valuePlain(v),
      device,
      kind: "spike",
      reason: "out_of_range",
      readings: 0,
    };
  }

  function bad(tUs: number): SimMessage<string> {
    const reason = reasons[nextReason++ % reasons.length];
    const device = pickDevice(tUs);
    const d = fleet.devices[device];
    const key = d.feeds[0]?.key ?? `${d.code}-temperature`;
    const m = (topic: string, payload: string): SimMessage<string> => ({
      topic,
      payload,
      device,
      kind: "bad",
      reason,
      readings: 0,
    });
    switch (reason) {
      case "bad_topic":
        // Matches the subscription filter (one level per +), but a device code longer
        // than decode.ts accepts (128 characters).
        return m(feedTopic(d, key, d.userId, `${d.code}-${"x".repeat(130)}`), "1");
      case "bad_user_id":
        return m(feedTopic(d, key, `user-${rng.hex(8)}`), "21.5");
      case "bad_payload":
        return m(feedTopic(d, key), '{"value": 21.5');
      case "bad_timestamp":
        return m(feedTopic(d, key), JSON.stringify({ value: 21.5, ts: "yesterday" }));
      case "bad_status":
        return m(statusTopic(d), "rebooting");
      case "too_large": {
        const head = '{"value": 1, "note": "';
        const pad = Math.max(0, opts.maxPayloadBytes + 1 - head.length - 2);
        return m(feedTopic(d, key), `${head}${"x".repeat(pad)}"}`);
      }
      case "future_timestamp":
        // Far beyond any skew serve allows, and the same text every run.
        return m(feedTopic(d, key), JSON.stringify({ value: 21.5, ts: "2999-01-01T00:00:00Z" }));
      case "unknown_feed":
        return m(feedTopic(d, `${d.code}-ghost-${rng.hex(4)}`), "1");
      case "unknown_device":
        return m(statusTopic(d, `ghost-${rng.hex(6)}`), "online");
      case "out_of_range": {
        const pick = ranged[rng.int(ranged.length)];
        const spike = spikeOf(pick.device, pick.feed);
        return { ...spike, kind: "bad" };
      }
    }
    throw new Error(`unreachable: ${reason satisfies never}`);
  }

  function next(tUs: number): SimMessage<string> {
    if (rng.chance(opts.badRatio)) return bad(tUs);
    const device = pickDevice(tUs);
    const d = fleet.devices[device];
    const format = rng.pick(opts.formats);
    if (format === "bulk") {
      const ts = isoMicros(tUs);
      const entries = d.feeds.map((f) => ({ f, v: models.get(f)!.next(tUs) }));
      // Both shapes of docs/topics-and-payloads.md: an object of values (receive time), or an array of
      // entries with the device's timestamp.
      const payload = rng.chance(0.5)
        ? `{${entries.map(({ f, v }) => `${JSON.stringify(f.key)}:${valueJson(v)}`).join(",")}}`
        : `[${
          entries.map(({ f, v }) =>
            `{"feed":${JSON.stringify(f.key)},"value":${valueJson(v)},"ts":"${ts}"}`
          ).join(",")
        }]`;
      return {
        topic: formatTopic(templates.feeds, { user_id: d.userId, device_code: d.code }),
        payload,
        device,
        kind: "bulk",
        readings: entries.length,
      };
    }
    const feed = d.feeds[rng.int(d.feeds.length)];
    if (hasRange(feed) && rng.chance(opts.spikeRatio)) return spikeOf(device, feed);
    const v = models.get(feed)!.next(tUs);
    return {
      topic: feedTopic(d, feed.key),
      payload: format === "plain"
        ? valuePlain(v)
        : `{"value":${valueJson(v)},"ts":"${isoMicros(tUs)}"}`,
      device,
      kind: format,
      readings: 1,
    };
  }

  return { next, reasons };
}

/** How many of `n` a share `ratio` picks (none without a ratio). */
function chosen(n: number, ratio = 0): number {
  return Math.round(n * ratio);
}

/** A shuffled copy of `items` (Fisher-Yates). */
function shuffled<T>(items: readonly T[], rng: Rng): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

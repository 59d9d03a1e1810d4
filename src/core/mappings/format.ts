/**
 * The contract of a payload format of mapping rules: a rule's `format` (default
 * `json`) names the decoder its payload bytes go through (docs/topics-and-payloads.md,
 * "Mappings"; docs/architecture.md, "Where to add things").
 *
 * THE CONTRACT of a format, for whoever adds one (`sparkplug`, sparkplug_format.ts, is
 * the first of shape "self"):
 *
 * - A format is a `PayloadFormat`: a `name` (what rules write in `format`), a `shape`,
 *   an optional zod schema for the rule's `options` field, and `decode`.
 * - `shape: "tree"`: `decode` turns the bytes into a plain value (objects, arrays,
 *   numbers, text, booleans, null) and answers `{ kind: "tree", tree }`; the rule then
 *   says what becomes of it (`readings`, `text`, `ignore`, `time` or `status`), exactly as
 *   for JSON. `json`, `raw` and `cbor` are such formats.
 * - `shape: "self"`: the format knows its own payload (a metric list with names, types
 *   and times) and answers with readings (`kind: "readings"`, each with a `name`, which
 *   the rule's `feed_key` template turns into a feed key through `{path}`), a status, a
 *   reject or a skip; or, for what the message model does not cover yet, a whole
 *   `Decoded` (`kind: "decoded"`) built from `ctx.tenant` and `ctx.deviceCode`. A rule
 *   of a "self" format may not have `readings`, `text`, `ignore`, `time` or `status`.
 * - `decode` is pure and synchronous (it runs on the receive path for every message, and
 *   may not look anything up in the database: state a format needs from there is
 *   resolved by the processor, as tenant aliases are in src/ingest/write/lookups.ts), and
 *   never throws on any bytes: a payload it cannot use is a reject with a reason from
 *   `REJECT_REASONS` (src/core/message.ts; add a reason there if none fits). Should it
 *   throw all the same, the message becomes an `internal_error` reject
 *   (src/core/decode.ts `neverThrowing`), dead-lettered and replayable.
 * - `ctx` gives the topic, the values of the rule's named topic levels, the tenant and
 *   device already resolved from them, the receive time, the limits of serve's options
 *   (payload size is checked before `decode` is called; the format bounds what it
 *   builds: nesting by `maxJsonDepth`, entries by `maxBulkEntries`) and the rule's
 *   `options` as the format's schema parsed them at start.
 * - Times are µs since the epoch (`parseTimestamp` in src/core/payload.ts reads the
 *   usual forms); a reading without one takes the receive time.
 * - To add one: write it beside this file, add it to `FORMATS` in registry.ts, and a case
 *   to src/core/mappings/decode_mapped_test.ts. A name can be kept for a format still to
 *   come (`RESERVED_FORMATS`): a rule naming it is refused at start with a line saying so.
 */
import type { z } from "zod";
import type { Decoded, DeviceStatus, ReadingReject, RejectReason, SkipReason } from "../message.ts";
import type { PayloadLimits } from "../payload.ts";

/** A reading a "self" format found: `name` is what `{path}` stands for in the feed key. */
export interface NamedReading {
  name: string;
  value: number | null;
  text: string | null;
  tsUs: number | null;
}

/** What a format made of the payload. */
export type FormatOutput =
  | { kind: "tree"; tree: unknown }
  | { kind: "readings"; readings: NamedReading[]; rejects: ReadingReject[] }
  | {
    kind: "status";
    status: DeviceStatus;
    tsUs: number | null;
    details: Record<string, unknown> | null;
  }
  | { kind: "decoded"; decoded: Decoded }
  | { kind: "reject"; reason: RejectReason; detail: string }
  | { kind: "skip"; reason: SkipReason };

/** The tenant of a message as its rule resolved it: a user id, or an alias for the processor. */
export type Tenant = { userId: string; alias?: undefined } | { userId: ""; alias: string };

/** What a format's `decode` is told. */
export interface FormatContext {
  topic: string;
  /** The rule's named topic levels and their values in this topic. */
  levels: Readonly<Record<string, string>>;
  tenant: Tenant;
  deviceCode: string;
  receivedAtUs: number;
  limits: PayloadLimits & { maxFutureSkewMs: number; maxPayloadBytes: number };
  /** The rule's `options`, as `optionsSchema` parsed them (undefined without a schema). */
  options: unknown;
}

/** A payload format (see the contract above). */
export interface PayloadFormat {
  name: string;
  shape: "tree" | "self";
  /** Validates the rule's `options` at start; without it a rule may not have options. */
  optionsSchema?: z.ZodType;
  decode(payload: Uint8Array, ctx: FormatContext): FormatOutput;
}

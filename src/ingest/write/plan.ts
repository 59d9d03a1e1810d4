/**
 * The plan of a batch: what each message becomes (value rows, status events, rejects,
 * skips), given what the lookups found. Pure, no SQL and no clock, so every rule is
 * unit-tested without a database (src/ingest/write/plan_test.ts); the writers carry the
 * plan out (docs/architecture.md, "The data path").
 *
 * The batch is walked twice: `keysOf` builds each message's keys once (its device's, each
 * reading's feed's) and gathers the distinct feeds and devices the lookups ask for;
 * `planBatch` sorts every message and reading. A rule that arises from a message and what
 * the database holds about it lands here; one the database itself decides (a refused
 * row, a conflicting reading) lands in the writer of its table.
 */
import type { Decoded, DecodedMessage, Inbound, Owner, SkipReason } from "../../core/message.ts";
import { storableJson } from "../../core/payload.ts";
import { deviceKeyOf } from "../device_cache.ts";
import { type FeedInfo, feedKeyOf } from "../feed_cache.ts";
import type { RejectRow, RetainedStatus, StatusEvent, ValueRow } from "./rows.ts";

/** The rules of a batch that depend on options, not on messages. */
export interface PlanRules {
  /** Readings of a device not registered under its user are rejected (`unknown_device`). */
  requireDevice: boolean;
  /** Dev mode: every user, device and feed the batch names is created first. */
  autoRegister: boolean;
}

/** The keys of one message of readings or status, built once. */
export interface MessageKeys {
  /** `deviceKeyOf(user, device)`; null for readings when no rule needs their device. */
  device: string | null;
  /** `feedKeyOf(user, feed)` of each reading, in the order of its readings. */
  feeds: string[];
}

/** A feed the batch names. */
export interface FeedRef {
  userId: string;
  feedKey: string;
  /** The device of the last message that names it: where auto-register attaches it. */
  deviceCode: string;
}

/** A device the batch names. */
export interface DeviceRef {
  userId: string;
  deviceCode: string;
  /** A status message names it, so its id is needed whatever the rules. */
  hasStatus: boolean;
}

/** The keys of a batch: per message, and the distinct feeds and devices to look up. */
export interface BatchKeys {
  /** In batch order; null for a message decoded as a reject or a skip. */
  messages: (MessageKeys | null)[];
  feeds: Map<string, FeedRef>;
  devices: Map<string, DeviceRef>;
}

/** What the lookups found: feeds by feed key, ids of registered devices by device key. */
export interface Found {
  feeds: ReadonlyMap<string, FeedInfo>;
  devices: ReadonlyMap<string, number>;
}

/** What each message of a batch becomes. */
export interface Plan {
  values: ValueRow[];
  statuses: StatusEvent[];
  /** Retained statuses without a time of their own, by device id (the last one wins). */
  retained: Map<number, RetainedStatus>;
  rejects: RejectRow[];
  skipped: Partial<Record<SkipReason, number>>;
}

/** The resolved tenant aliases of a batch: alias → user id (src/ingest/write/lookups.ts). */
export type Tenants = ReadonlyMap<string, string>;

/**
 * The tenant aliases a batch names (`tenantAlias`: set by the rules of a mappings file),
 * for `lookupTenants`; none without such rules.
 */
export function aliasesOf(batch: readonly DecodedMessage[]): Set<string> {
  const aliases = new Set<string>();
  for (const { decoded } of batch) {
    const alias = ownerOf(decoded)?.tenantAlias;
    if (alias !== undefined) aliases.add(alias);
  }
  return aliases;
}

/** The owner of a message that has one (readings, a status, a Sparkplug message). */
function ownerOf(d: Decoded): Owner | null {
  return d.kind === "readings" || d.kind === "status" || d.kind === "sparkplug" ? d : null;
}

/**
 * The batch with each message named by a tenant alias given the user `tenants` resolved
 * the alias to, or, when `tenant_aliases` does not have it, made an `unknown_tenant`
 * reject (a copy of the message; the batch itself is left as decoded, so a retry resolves
 * afresh). Everything after the lookups (the Sparkplug step, the plan, the writers,
 * feedback, alert events) then sees the message's user as for any other message.
 */
export function withTenants(batch: DecodedMessage[], tenants: Tenants): DecodedMessage[] {
  let out: DecodedMessage[] | null = null;
  for (let i = 0; i < batch.length; i++) {
    const { inbound, decoded } = batch[i];
    const alias = ownerOf(decoded)?.tenantAlias;
    if (alias === undefined) continue;
    const userId = tenants.get(alias);
    out ??= batch.slice();
    out[i] = {
      inbound,
      decoded: userId === undefined
        ? { kind: "reject", reason: "unknown_tenant", detail: unknownTenantDetail(alias) }
        : { ...decoded, userId } as Decoded,
    };
  }
  return out ?? batch;
}

function unknownTenantDetail(alias: string): string {
  return `no tenant alias ${JSON.stringify(alias)}: insert into tenant_aliases (alias, user_id) ` +
    "values (it, the user's id), then replay --rejects";
}

/**
 * Walk one: each message's keys, and the distinct feeds and devices (of a batch whose
 * tenant aliases `withTenants` resolved).
 */
export function keysOf(batch: readonly DecodedMessage[], rules: PlanRules): BatchKeys {
  const readingDevices = rules.requireDevice || rules.autoRegister;
  const keys: BatchKeys = {
    messages: new Array(batch.length),
    feeds: new Map(),
    devices: new Map(),
  };
  for (let i = 0; i < batch.length; i++) {
    const d = batch[i].decoded;
    // A Sparkplug message is resolved into readings before (src/ingest/write/sparkplug.ts).
    if (d.kind === "reject" || d.kind === "skip" || d.kind === "sparkplug") {
      keys.messages[i] = null;
      continue;
    }
    const isStatus = d.kind === "status";
    let device: string | null = null;
    if (isStatus || readingDevices) {
      device = deviceKeyOf(d.userId, d.deviceCode);
      const known = keys.devices.get(device);
      if (!known) {
        keys.devices.set(device, {
          userId: d.userId,
          deviceCode: d.deviceCode,
          hasStatus: isStatus,
        });
      } else if (isStatus) known.hasStatus = true;
    }
    keys.messages[i] = { device, feeds: isStatus ? [] : feedKeysOf(d, keys.feeds) };
  }
  return keys;
}

/** The feed key of each reading of `d`, each feed gathered into `feeds` once. */
function feedKeysOf(d: ReadingsOf, feeds: Map<string, FeedRef>): string[] {
  const out = new Array<string>(d.readings.length);
  for (let j = 0; j < d.readings.length; j++) {
    const feedKey = d.readings[j].feedKey;
    const key = feedKeyOf(d.userId, feedKey);
    out[j] = key;
    const known = feeds.get(key);
    if (known) known.deviceCode = d.deviceCode;
    else feeds.set(key, { userId: d.userId, feedKey, deviceCode: d.deviceCode });
  }
  return out;
}

/** Walk two: every message and reading sorted into rows, rejects and skips. */
export function planBatch(
  batch: readonly DecodedMessage[],
  keys: BatchKeys,
  found: Found,
  rules: PlanRules,
): Plan {
  const plan: Plan = { values: [], statuses: [], retained: new Map(), rejects: [], skipped: {} };
  for (let i = 0; i < batch.length; i++) {
    const { inbound, decoded } = batch[i];
    if (decoded.kind === "reject") {
      plan.rejects.push({ message: i, reason: decoded.reason, detail: decoded.detail });
    } else if (decoded.kind === "skip") {
      count(plan.skipped, decoded.reason);
    } else if (decoded.kind === "sparkplug") {
      plan.rejects.push({ message: i, reason: "internal_error", detail: "unresolved Sparkplug" });
    } else if (decoded.kind === "status") {
      planStatus(plan, i, inbound, decoded, found.devices.get(keys.messages[i]!.device!));
    } else if (rules.requireDevice && !found.devices.has(keys.messages[i]!.device!)) {
      plan.rejects.push({ message: i, reason: "unknown_device", detail: noDevice(decoded) });
    } else {
      planReadings(plan, i, inbound, decoded, keys.messages[i]!.feeds, found.feeds);
    }
  }
  return plan;
}

type ReadingsOf = Extract<Decoded, { kind: "readings" }>;
type StatusOf = Extract<Decoded, { kind: "status" }>;

function planReadings(
  plan: Plan,
  message: number,
  inbound: Inbound,
  decoded: ReadingsOf,
  feedKeys: string[],
  feeds: ReadonlyMap<string, FeedInfo>,
): void {
  // Entries of a bulk message that could not be parsed.
  for (const r of decoded.rejects) plan.rejects.push({ message, ...r });
  for (let j = 0; j < decoded.readings.length; j++) {
    const reading = decoded.readings[j];
    const feed = feeds.get(feedKeys[j]);
    if (!feed) {
      plan.rejects.push({
        message,
        reason: "unknown_feed",
        detail: `no feed "${reading.feedKey}" for this user`,
      });
    } else if (!feed.isActive) {
      count(plan.skipped, "inactive_feed");
    } else if (inbound.retain && reading.tsUs === null) {
      // A retained message replayed on subscribe is an old reading with no time of its
      // own; stamping it "now" would invent a new reading.
      count(plan.skipped, "retained");
    } else if (
      reading.value !== null && outOfRange(feed, reading.value) && !feed.alerts?.alertMode
    ) {
      // Threshold mode `reject` (the default); in mode `alert` the reading is stored and
      // the alert rules judge it after the write (src/ingest/write/alert_plan.ts).
      plan.rejects.push({
        message,
        reason: "out_of_range",
        detail: `${reading.feedKey}: ${reading.value} outside [${feed.thresholdMin ?? "-inf"}, ${
          feed.thresholdMax ?? "inf"
        }]`,
      });
    } else {
      plan.values.push({
        feedId: feed.id,
        feedKey: reading.feedKey,
        value: reading.value,
        text: reading.text,
        // Sources keep receive times strictly increasing (src/clock.ts) and past the
        // extra stamps of a many-feeds message's repeated feeds (`receiveOffsetUs`), so
        // a receive-time stamp never makes two distinct readings collide.
        createdUs: reading.tsUs ?? inbound.receivedAtUs + (reading.receiveOffsetUs ?? 0),
        receivedUs: inbound.receivedAtUs,
        message,
        watched: feed.alerts?.watchesSilence ?? false,
      });
    }
  }
}

function planStatus(
  plan: Plan,
  message: number,
  inbound: Inbound,
  decoded: StatusOf,
  deviceId: number | undefined,
): void {
  if (deviceId === undefined) {
    plan.rejects.push({ message, reason: "unknown_device", detail: noDevice(decoded) });
  } else if (inbound.retain && decoded.tsUs === null) {
    // The broker re-sending an old status on subscribe: no event (a restart would add
    // one each time), and the status only of a device that has none yet.
    count(plan.skipped, "retained");
    plan.retained.set(deviceId, { status: decoded.status, atUs: inbound.receivedAtUs });
  } else {
    plan.statuses.push({
      deviceId,
      status: decoded.status,
      payload: decoded.details ? storableJson(decoded.details) : null,
      atUs: decoded.tsUs ?? inbound.receivedAtUs,
      message,
    });
  }
}

function noDevice(decoded: ReadingsOf | StatusOf): string {
  return `no device "${decoded.deviceCode}" for this user`;
}

function outOfRange(feed: FeedInfo, value: number): boolean {
  return (feed.thresholdMin !== null && value < feed.thresholdMin) ||
    (feed.thresholdMax !== null && value > feed.thresholdMax);
}

/** Adds `n` to `map[key]`. */
export function count<K extends string>(map: Partial<Record<K, number>>, key: K, n = 1): void {
  map[key] = (map[key] ?? 0) + n;
}

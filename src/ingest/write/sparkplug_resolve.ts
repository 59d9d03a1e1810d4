/**
 * Sparkplug B messages of a batch, resolved against the recorded BIRTH state: pure, no
 * SQL (docs/topics-and-payloads.md, "Sparkplug B"). The batch is walked in order, so a
 * BIRTH earlier in the batch is what a DATA after it is decoded by. Each Sparkplug
 * message becomes an ordinary message of readings (or a skip), and besides:
 *
 * - a BIRTH: its state to record (when it is newer than the recorded one), the device and
 *   feeds it declares (for `--sparkplug-register`), and the device's status `online`;
 * - a DEATH: the status `offline`, of the edge node and every device born under it for an
 *   NDEATH, and only when the NDEATH's bdSeq is the last NBIRTH's (else it is the will of
 *   an older session: skipped as `sparkplug_stale_death`).
 *
 * A metric of a DATA whose alias no recorded BIRTH declares is rejected as
 * `sparkplug_unknown_alias`; its message keeps its whole payload in the dead letter, so
 * `replay --rejects` can take it again once the BIRTH arrived (src/ingest/write/rejects.ts).
 */
import type { DecodedMessage, Reading, ReadingReject } from "../../core/message.ts";
import type { MetricReject, SparkplugMessage } from "../../core/sparkplug/model.ts";
import { isProtocolMetric, sparkplugFeedKey } from "../../core/sparkplug/names.ts";
import { isReadable, readingOf } from "../../core/sparkplug/values.ts";

/** What a BIRTH declared of one metric. */
export interface MetricDef {
  name: string;
  alias: number | null;
  datatype: number | null;
}

/** The metrics of one BIRTH, by alias and by name. Never changed once built. */
export interface MetricTable {
  byAlias: Map<number, MetricDef>;
  byName: Map<string, MetricDef>;
}

/** A BIRTH as recorded (or, within a batch, as just decoded). */
export interface KnownBirth {
  /** Its row's id; 0 for one of this batch, not written yet. */
  id: number;
  bdSeq: number | null;
  receivedUs: number;
  /** Loaded for the scopes a DATA of the batch needs; else absent. */
  table?: MetricTable;
}

/** The recorded state the batch needs: births by scope, devices born under each node. */
export interface SparkplugState {
  births: Map<string, KnownBirth>;
  /** `nodeKey` → the device ids with a recorded DBIRTH. */
  devicesOf: Map<string, Set<string>>;
}

/** A BIRTH to record. */
export interface NewBirth {
  userId: string;
  groupId: string;
  edgeNode: string;
  /** '' for the edge node. */
  device: string;
  bdSeq: number | null;
  bornUs: number;
  receivedUs: number;
  defs: MetricDef[];
  table: MetricTable;
}

/** A device and the feeds its BIRTH declares. */
export interface Registration {
  userId: string;
  deviceCode: string;
  feedKeys: string[];
}

/** A status the batch sets. */
export interface StatusIntent {
  message: number;
  userId: string;
  deviceCode: string;
  status: "online" | "offline";
  atUs: number;
  /** For the history row: the message type and sequence numbers. */
  details: Record<string, unknown>;
  /** A device born under an NDEATH's node: no reject when it is not registered. */
  quiet?: true;
}

/** The batch, resolved. */
export interface Resolved {
  /** The batch with each Sparkplug message made readings or a skip (same indexes). */
  messages: DecodedMessage[];
  births: NewBirth[];
  registrations: Registration[];
  statuses: StatusIntent[];
}

type SparkplugOf = Extract<DecodedMessage["decoded"], { kind: "sparkplug" }>;

/** The key of an edge node (device null) or a device, per tenant and group. */
export function scopeKey(userId: string, m: SparkplugMessage): string {
  return `${nodeKey(userId, m)}\u0000${m.deviceId ?? ""}`;
}

/** The key of an edge node, per tenant and group. */
export function nodeKey(userId: string, m: { groupId: string; edgeNodeId: string }): string {
  return `${userId}\u0000${m.groupId}\u0000${m.edgeNodeId}`;
}

/**
 * Resolves the Sparkplug messages of `batch` against `state`, the batch's own copy of the
 * recorded state, which it moves forward by the batch's BIRTHs (so a retried batch starts
 * again from what it reads anew); see the module doc.
 */
export function resolveSparkplug(
  batch: readonly DecodedMessage[],
  state: SparkplugState,
): Resolved {
  const messages = batch.slice();
  const births = new Map<string, NewBirth>();
  const registrations: Registration[] = [];
  const statuses: StatusIntent[] = [];
  const born = (key: string) => state.births.get(key);
  for (let i = 0; i < batch.length; i++) {
    const { inbound, decoded } = batch[i];
    if (decoded.kind !== "sparkplug") continue;
    const sp = decoded.sparkplug;
    const key = scopeKey(decoded.userId, sp);
    // An NDEATH is usually the MQTT will, made when the edge node connected: its payload's
    // time is older than the NBIRTH that followed, so it counts from when it arrived.
    const atUs = sp.type === "NDEATH" ? inbound.receivedAtUs : sp.tsUs ?? inbound.receivedAtUs;
    const details = {
      sparkplug: sp.type,
      seq: sp.seq,
      ...(sp.bdSeq !== null ? { bdSeq: sp.bdSeq } : {}),
    };
    const status = (status: "online" | "offline", deviceCode = decoded.deviceCode) =>
      statuses.push({ message: i, userId: decoded.userId, deviceCode, status, atUs, details });
    if (sp.type === "NBIRTH" || sp.type === "DBIRTH") {
      const { defs, table, rejects } = birthTable(sp);
      const current = born(key);
      if (!current || current.receivedUs < inbound.receivedAtUs) {
        const birth: KnownBirth = {
          id: 0,
          bdSeq: sp.bdSeq,
          receivedUs: inbound.receivedAtUs,
          table,
        };
        state.births.set(key, birth);
        births.set(key, newBirth(decoded, defs, table, atUs, inbound.receivedAtUs));
        if (sp.deviceId !== null) devicesUnder(state, decoded.userId, sp).add(sp.deviceId);
      }
      const made = readingsOf(decoded, table, rejects);
      messages[i] = { inbound, decoded: made };
      registrations.push({
        userId: decoded.userId,
        deviceCode: decoded.deviceCode,
        feedKeys: feedKeysOf(decoded.deviceCode, defs),
      });
      status("online");
    } else if (sp.type === "NDATA" || sp.type === "DDATA") {
      messages[i] = { inbound, decoded: readingsOf(decoded, born(key)?.table ?? null, []) };
    } else if (sp.type === "NDEATH") {
      const current = born(key);
      if (current && current.bdSeq !== sp.bdSeq) {
        messages[i] = { inbound, decoded: { kind: "skip", reason: "sparkplug_stale_death" } };
        continue;
      }
      messages[i] = { inbound, decoded: noReadings(decoded) };
      status("offline");
      for (const device of state.devicesOf.get(nodeKey(decoded.userId, sp)) ?? []) {
        statuses.push({
          message: i,
          userId: decoded.userId,
          deviceCode: `${decoded.deviceCode}.${device}`,
          status: "offline",
          atUs,
          details,
          quiet: true,
        });
      }
    } else {
      messages[i] = { inbound, decoded: noReadings(decoded) };
      status("offline");
    }
  }
  return { messages, births: [...births.values()], registrations, statuses };
}

function devicesUnder(state: SparkplugState, userId: string, sp: SparkplugMessage): Set<string> {
  const key = nodeKey(userId, sp);
  let set = state.devicesOf.get(key);
  if (!set) state.devicesOf.set(key, set = new Set());
  return set;
}

function newBirth(
  decoded: SparkplugOf,
  defs: MetricDef[],
  table: MetricTable,
  bornUs: number,
  receivedUs: number,
): NewBirth {
  const sp = decoded.sparkplug;
  return {
    userId: decoded.userId,
    groupId: sp.groupId,
    edgeNode: sp.edgeNodeId,
    device: sp.deviceId ?? "",
    bdSeq: sp.bdSeq,
    bornUs,
    receivedUs,
    defs,
    table,
  };
}

function noReadings(decoded: SparkplugOf): DecodedMessage["decoded"] {
  return {
    kind: "readings",
    userId: decoded.userId,
    deviceCode: decoded.deviceCode,
    readings: [],
    rejects: decoded.sparkplug.rejects,
  };
}

/**
 * The metric table a BIRTH declares: every metric with a name, each name and alias once
 * (a repeated one is rejected, the first kept), so the recorded state never holds two
 * answers for one alias.
 */
export function birthTable(sp: SparkplugMessage): {
  defs: MetricDef[];
  table: MetricTable;
  rejects: MetricReject[];
} {
  const table: MetricTable = { byAlias: new Map(), byName: new Map() };
  const defs: MetricDef[] = [];
  const rejects: MetricReject[] = [];
  for (const m of sp.metrics) {
    if (m.name === null) {
      rejects.push({
        reason: "bad_payload",
        detail: `metric alias ${m.alias}: a BIRTH metric needs a name`,
      });
    } else if (table.byName.has(m.name)) {
      rejects.push({ reason: "bad_payload", detail: `metric "${m.name}" is declared twice` });
    } else if (m.alias !== null && table.byAlias.has(m.alias)) {
      rejects.push({
        reason: "bad_payload",
        detail: `metric "${m.name}": alias ${m.alias} is declared twice`,
      });
    } else {
      const def: MetricDef = { name: m.name, alias: m.alias, datatype: m.datatype };
      defs.push(def);
      table.byName.set(m.name, def);
      if (m.alias !== null) table.byAlias.set(m.alias, def);
    }
  }
  return { defs, table, rejects };
}

/** The feed keys of the metrics a BIRTH declares that can be readings. */
function feedKeysOf(deviceCode: string, defs: MetricDef[]): string[] {
  const keys: string[] = [];
  for (const d of defs) {
    if (isProtocolMetric(d.name) || (d.datatype !== null && !isReadable(d.datatype))) continue;
    const key = sparkplugFeedKey(deviceCode, d.name);
    if (key !== null) keys.push(key);
  }
  return keys;
}

/**
 * The readings of a BIRTH or DATA message: each metric by its name (a DATA's alias looked
 * up in `table`), its value read by its datatype (the metric's own, else its BIRTH's).
 */
function readingsOf(
  decoded: SparkplugOf,
  table: MetricTable | null,
  birthRejects: MetricReject[],
): DecodedMessage["decoded"] {
  const sp = decoded.sparkplug;
  const readings: Reading[] = [];
  const rejects: ReadingReject[] = [...sp.rejects, ...birthRejects];
  let unknown: number[] | null = null;
  for (const metric of sp.metrics) {
    const def = metric.name !== null
      ? table?.byName.get(metric.name)
      : table?.byAlias.get(metric.alias!);
    const name = metric.name ?? def?.name;
    if (name === undefined) {
      (unknown ??= []).push(metric.alias!);
      continue;
    }
    if (isProtocolMetric(name)) continue;
    const out = readingOf(
      metric,
      name,
      metric.datatype ?? def?.datatype ?? null,
      decoded.deviceCode,
      sp.tsUs,
    );
    if (out === null) continue;
    if ("reason" in out) rejects.push(out);
    else readings.push(out);
  }
  if (unknown) {
    const reject = unknownAliases(unknown, sp.deviceId === null ? "NBIRTH" : "DBIRTH");
    // Nothing of the message can be stored: it is rejected whole for what a BIRTH will
    // mend (its device, too, may be registered only by that BIRTH).
    if (readings.length === 0) return { kind: "reject", ...reject };
    rejects.push(reject);
  }
  return {
    kind: "readings",
    userId: decoded.userId,
    deviceCode: decoded.deviceCode,
    readings,
    rejects,
  };
}

/** One reject for all the aliases of a message that no BIRTH declares. */
function unknownAliases(aliases: number[], birth: string): ReadingReject {
  const distinct = [...new Set(aliases)];
  const shown = distinct.slice(0, 20).join(", ") + (distinct.length > 20 ? ", …" : "");
  return {
    reason: "sparkplug_unknown_alias",
    detail: `metric alias${distinct.length > 1 ? "es" : ""} ${shown}: no recorded ${birth} ` +
      `declares ${distinct.length > 1 ? "them" : "it"}`,
  };
}

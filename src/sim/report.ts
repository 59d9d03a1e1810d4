/**
 * What `simulate` says while it runs and when it ends: the counters, a one-line status
 * (rewritten in place on a terminal), and the final summary as text or JSON.
 */
import type { LinkStats } from "./device_links.ts";
import type { BadReason, TrafficKind } from "./traffic.ts";

/** Counters of the publishing side. */
export interface SendStats {
  /** Messages handed to a connection, by kind (device status not included). */
  sent: Record<TrafficKind, number>;
  /** Readings in the good messages (a many-feeds message carries several). */
  readings: number;
  /** Bad messages by the reject reason they were built for. */
  badByReason: Partial<Record<BadReason, number>>;
  /** Acknowledged by the broker (QoS 1/2) or written to the socket (QoS 0). */
  acked: number;
  /** Readings in the acknowledged good messages: what serve must store at least. */
  readingsAcked: number;
  /** Publishes that failed (the client reported an error). */
  failed: number;
  /** Handed over, neither acked nor failed yet. */
  inflight: number;
  lastPublishError: string | null;
}

/** Fresh counters. */
export function createSendStats(): SendStats {
  return {
    sent: { plain: 0, json: 0, bulk: 0, spike: 0, bad: 0, mapped: 0 },
    readings: 0,
    badByReason: {},
    acked: 0,
    readingsAcked: 0,
    failed: 0,
    inflight: 0,
    lastPublishError: null,
  };
}

/** Messages sent in total (device status not included). */
export function totalSent(s: SendStats): number {
  return s.sent.plain + s.sent.json + s.sent.bulk + s.sent.spike + s.sent.bad + s.sent.mapped;
}

/** The summary of a run, as `--json` prints it. */
export interface SimSummary {
  seed: number;
  broker: string;
  protocol: "3.1.1" | "5";
  qos: number;
  fleet: { users: number; devices: number; feeds: number };
  connections: number;
  registered: { users: number; devices: number; feeds: number } | null;
  manifest: string | null;
  /** Whether the serve found auto-registers (null: not known); see `stored_by_auto_register`. */
  auto_register: boolean | null;
  /** The feeds' threshold mode as registered (`alert`: spikes are stored, not rejected). */
  threshold_mode?: "reject" | "alert";
  elapsed_s: number;
  messages: number;
  rate: number;
  target_rate: number | null;
  by_kind: Record<TrafficKind, number>;
  readings: number;
  /**
   * Readings in the messages the broker acknowledged (QoS 1/2): the rest were in flight
   * when a connection dropped or the run ended, and may or may not have arrived.
   */
  readings_acked: number;
  /**
   * Reject reasons serve should record for this run: bad messages, and spikes as
   * out_of_range (not in threshold mode alert, which stores them).
   */
  rejects_intended: Partial<Record<BadReason, number>>;
  /**
   * Bad messages for unknown feeds and devices sent to a serve that auto-registers: it
   * stores them (creating the feed or device), so they are not in `rejects_intended`.
   */
  stored_by_auto_register: Partial<Record<BadReason, number>>;
  acked: number;
  failed: number;
  unsettled: number;
  last_publish_error: string | null;
  status_sent: number;
  connects: number;
  drops: number;
  lost: number;
  errors: number;
  last_error: string | null;
}

/** Reject reasons that a serve with auto-register turns into stored messages. */
export const AUTO_REGISTERED: readonly BadReason[] = ["unknown_feed", "unknown_device"];

/** Builds the summary from the counters. */
export function buildSummary(
  base: Pick<
    SimSummary,
    | "seed"
    | "broker"
    | "protocol"
    | "qos"
    | "fleet"
    | "connections"
    | "registered"
    | "manifest"
    | "auto_register"
    | "threshold_mode"
  >,
  send: SendStats,
  links: LinkStats | null,
  elapsedMs: number,
  targetRate: number | null,
): SimSummary {
  const messages = totalSent(send);
  const intended: Partial<Record<BadReason, number>> = { ...send.badByReason };
  if (send.sent.spike > 0 && base.threshold_mode !== "alert") {
    intended.out_of_range = (intended.out_of_range ?? 0) + send.sent.spike;
  }
  const autoStored: Partial<Record<BadReason, number>> = {};
  if (base.auto_register) {
    for (const reason of AUTO_REGISTERED) {
      if (intended[reason] === undefined) continue;
      autoStored[reason] = intended[reason];
      delete intended[reason];
    }
  }
  const seconds = elapsedMs / 1000;
  return {
    ...base,
    elapsed_s: Math.round(seconds * 1000) / 1000,
    messages,
    rate: seconds > 0 ? Math.round((messages / seconds) * 10) / 10 : 0,
    target_rate: targetRate,
    by_kind: { ...send.sent },
    readings: send.readings,
    readings_acked: send.readingsAcked,
    rejects_intended: intended,
    stored_by_auto_register: autoStored,
    acked: send.acked,
    failed: send.failed,
    unsettled: send.inflight,
    last_publish_error: send.lastPublishError,
    status_sent: links?.statusSent ?? 0,
    connects: links?.connects ?? 0,
    drops: links?.drops ?? 0,
    lost: links?.lost ?? 0,
    errors: links?.errors ?? 0,
    last_error: links?.lastError ?? null,
  };
}

/** The one-line status: rate over the last interval, totals by kind, connections, errors. */
export function formatStatusLine(
  send: SendStats,
  links: LinkStats | null,
  up: number,
  connections: number,
  ratePerSec: number,
  elapsedMs: number,
): string {
  const k = send.sent;
  const parts = [
    `${(elapsedMs / 1000).toFixed(0)}s`,
    `sent ${totalSent(send)} (${ratePerSec.toFixed(0)}/s)`,
    // A --format fleet sends only `mapped` messages; feedline's own, the other kinds.
    k.mapped > 0
      ? `mapped ${k.mapped}`
      : `plain ${k.plain} json ${k.json} bulk ${k.bulk} spike ${k.spike} bad ${k.bad}`,
    `status ${links?.statusSent ?? 0}`,
    `conns ${up}/${connections}`,
  ];
  if (links && (links.drops > 0 || links.lost > 0)) {
    parts.push(`drops ${links.drops} lost ${links.lost}`);
  }
  parts.push(`errors ${send.failed + (links?.errors ?? 0)}`);
  return parts.join(" | ");
}

/** The final summary as readable lines. */
export function formatSummary(s: SimSummary): string {
  const kinds = Object.entries(s.by_kind).filter(([k, v]) => k !== "mapped" || v > 0)
    .map(([k, v]) => `${k} ${v}`).join(", ");
  const intended = Object.entries(s.rejects_intended).map(([k, v]) => `${k} ${v}`).join(", ");
  const lines = [
    `simulate: ${s.messages} messages, ${s.readings} readings in ${s.elapsed_s.toFixed(1)} s ` +
    `(${s.rate}/s${s.target_rate ? `, target ${s.target_rate}/s` : ", flat out"}) to ${s.broker} ` +
    `(MQTT ${s.protocol}, QoS ${s.qos})`,
    `  by kind: ${kinds}`,
    `  fleet: seed ${s.seed}, ${s.fleet.users} users, ${s.fleet.devices} devices, ` +
    `${s.fleet.feeds} feeds over ${s.connections} connections` +
    (s.registered
      ? `; registered ${s.registered.users} users, ${s.registered.devices} devices, ` +
        `${s.registered.feeds} feeds (new or changed)`
      : ""),
    `  publishes: ${s.acked} acked, ${s.failed} failed, ${s.unsettled} unsettled` +
    (s.last_publish_error ? ` (last error: ${s.last_publish_error})` : ""),
    `  connections: ${s.connects} connects, ${s.drops} dropped on purpose (churn), ` +
    `${s.lost} lost, ${s.errors} errors, ${s.status_sent} status messages` +
    (s.last_error ? ` (last error: ${s.last_error})` : ""),
  ];
  if (intended) lines.push(`  meant to be rejected: ${intended}`);
  const autoStored = Object.entries(s.stored_by_auto_register).map(([k, v]) => `${k} ${v}`)
    .join(", ");
  if (autoStored) {
    lines.push(
      `  stored, not rejected (serve auto-registers unknown feeds and devices): ${autoStored}`,
    );
  }
  if (s.manifest) lines.push(`  manifest: ${s.manifest}`);
  return lines.join("\n");
}

/**
 * The writer of device status: a history row in `device_status_events` for every status
 * message, and each device's current status in `devices` moved forward in time. A status
 * already recorded (a replay, a redelivery) is absorbed by its key (device_id, at, status).
 * A retained status without a time of its own records no event (a restart would otherwise
 * add one each time) and sets only the status of a device that has none yet.
 */
import { timestampOfUs } from "../../db/timestamps.ts";
import type { Transaction } from "../../db/transaction.ts";
import { insertIsolated } from "./isolation.ts";
import type { RejectRow, RetainedStatus, StatusEvent } from "./rows.ts";

/** What became of a batch's status events. */
export interface StatusesWritten {
  /** Events recorded (one already recorded is absorbed, not counted). */
  recorded: number;
  /** Events the database refused (dead-lettered as `db_rejected`); null: none. */
  refused: ReadonlySet<StatusEvent> | null;
  rejects: RejectRow[];
}

/** Writes the events, and the retained statuses by device id. */
export async function writeStatuses(
  tx: Transaction,
  events: StatusEvent[],
  retained: ReadonlyMap<number, RetainedStatus>,
): Promise<StatusesWritten> {
  if (retained.size > 0) {
    const ids = [...retained.keys()];
    await tx`
      update devices d
      set status = x.s, status_changed_at = x.at, last_seen_at = x.at
      from (select id, s, ${timestampOfUs(tx, "a")} as at
            from unnest(${ids}::int8[], ${ids.map((id) => retained.get(id)!.status)}::text[],
                        ${ids.map((id) => retained.get(id)!.atUs)}::int8[]) as u(id, s, a)) x
      where d.id = x.id and d.status = 'unknown'`;
  }
  if (events.length === 0) return { recorded: 0, refused: null, rejects: [] };
  const { inserted, poison } = await insertIsolated(tx, events, insertStatusEvents);
  const refused = poison.length > 0 ? new Set(poison.map((p) => p.row)) : null;
  const latest = new Map<number, RetainedStatus>();
  for (const e of events) {
    if (refused?.has(e)) continue;
    const current = latest.get(e.deviceId);
    if (!current || current.atUs <= e.atUs) {
      latest.set(e.deviceId, { status: e.status, atUs: e.atUs });
    }
  }
  if (latest.size > 0) {
    const ids = [...latest.keys()];
    const statuses = ids.map((id) => latest.get(id)!.status);
    const ats = ids.map((id) => latest.get(id)!.atUs);
    await tx`
      update devices d
      set status = x.s,
          status_changed_at = case when d.status is distinct from x.s then x.at
                                   else coalesce(d.status_changed_at, x.at) end,
          last_seen_at = x.at
      from (select id, s, ${timestampOfUs(tx, "a")} as at
            from unnest(${ids}::int8[], ${statuses}::text[], ${ats}::int8[]) as u(id, s, a)) x
      where d.id = x.id and (d.last_seen_at is null or d.last_seen_at <= x.at)`;
  }
  return {
    recorded: inserted,
    refused,
    rejects: poison.map((p) => ({
      message: p.row.message,
      reason: "db_rejected" as const,
      detail: p.detail,
    })),
  };
}

async function insertStatusEvents(tx: Transaction, events: StatusEvent[]): Promise<number> {
  const res = await tx`
    insert into device_status_events (device_id, status, payload, at)
    select d, s, p::jsonb, ${timestampOfUs(tx, "a")}
    from unnest(${events.map((e) => e.deviceId)}::int8[], ${events.map((e) => e.status)}::text[],
                ${events.map((e) => e.payload)}::text[], ${events.map((e) => e.atUs)}::int8[])
      as x(d, s, p, a)
    on conflict do nothing`;
  return res.count;
}

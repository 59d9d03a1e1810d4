/**
 * The Sparkplug B step of a batch (docs/topics-and-payloads.md, "Sparkplug B"), in its
 * transaction, before the keys and lookups of src/ingest/write/plan.ts: the recorded BIRTH
 * state is read (src/ingest/write/sparkplug_state.ts), the Sparkplug messages resolved
 * against it (src/ingest/write/sparkplug_resolve.ts, pure), the batch's BIRTHs recorded and,
 * with `--sparkplug-register`, their devices and feeds created. What is left are ordinary
 * messages of readings, which the plan and the writers take as they take any; and the
 * statuses BIRTHs and DEATHs set, which join the plan's status events once the device
 * lookup found their devices (src/ingest/write/statuses.ts writes them).
 */
import type { DecodedMessage } from "../../core/message.ts";
import { storableJson } from "../../core/payload.ts";
import type { Transaction } from "../../db/transaction.ts";
import { deviceKeyOf } from "../device_cache.ts";
import type { BatchKeys, Plan } from "./plan.ts";
import { type Registration, resolveSparkplug, type StatusIntent } from "./sparkplug_resolve.ts";
import {
  hasSparkplug,
  loadSparkplugState,
  type SparkplugCache,
  writeBirths,
} from "./sparkplug_state.ts";

/** The processor's Sparkplug settings. */
export interface SparkplugSettings {
  /** Metric tables of recorded births (one per serve or replay). */
  cache?: SparkplugCache;
  /** A BIRTH creates its device and one feed per metric that are missing. */
  register?: boolean;
}

/** A batch's Sparkplug messages, resolved; see the module doc. */
export interface SparkplugStep {
  /** The batch with every Sparkplug message made readings or a skip. */
  messages: DecodedMessage[];
  /** Adds the devices whose status the step sets to the devices to look up. */
  nameDevices(keys: BatchKeys): void;
  /** Adds the statuses to the plan (or rejects `unknown_device` for an unregistered one). */
  planStatuses(plan: Plan, devices: ReadonlyMap<string, number>): void;
}

/** Runs the step; null when the batch holds no Sparkplug message. */
export async function prepareSparkplug(
  tx: Transaction,
  batch: DecodedMessage[],
  settings: SparkplugSettings = {},
): Promise<SparkplugStep | null> {
  if (!hasSparkplug(batch)) return null;
  const state = await loadSparkplugState(tx, batch, settings.cache);
  const resolved = resolveSparkplug(batch, state);
  await writeBirths(tx, resolved.births, settings.cache);
  if (settings.register) await registerBirths(tx, resolved.registrations);
  const { statuses } = resolved;
  return {
    messages: resolved.messages,
    nameDevices(keys) {
      for (const s of statuses) {
        const key = deviceKeyOf(s.userId, s.deviceCode);
        const known = keys.devices.get(key);
        if (known) known.hasStatus = true;
        else keys.devices.set(key, { userId: s.userId, deviceCode: s.deviceCode, hasStatus: true });
      }
    },
    planStatuses(plan, devices) {
      for (const s of statuses) {
        planStatus(plan, s, devices.get(deviceKeyOf(s.userId, s.deviceCode)));
      }
    },
  };
}

function planStatus(plan: Plan, s: StatusIntent, deviceId: number | undefined): void {
  if (deviceId !== undefined) {
    plan.statuses.push({
      deviceId,
      status: s.status,
      payload: storableJson(s.details),
      atUs: s.atUs,
      message: s.message,
    });
  } else if (!s.quiet) {
    plan.rejects.push({
      message: s.message,
      reason: "unknown_device",
      detail: `no device "${s.deviceCode}" for this user (--sparkplug-register is off)`,
    });
  }
}

/** Creates the devices of `registrations` and their feeds, leaving what exists. */
async function registerBirths(tx: Transaction, registrations: Registration[]): Promise<void> {
  if (registrations.length === 0) return;
  await tx`
    insert into devices (user_id, code)
    select * from unnest(${registrations.map((r) => r.userId)}::uuid[],
                         ${registrations.map((r) => r.deviceCode)}::text[])
    on conflict do nothing`;
  const users: string[] = [];
  const keys: string[] = [];
  const codes: string[] = [];
  for (const r of registrations) {
    for (const key of r.feedKeys) {
      users.push(r.userId);
      keys.push(key);
      codes.push(r.deviceCode);
    }
  }
  if (keys.length === 0) return;
  await tx`
    insert into feeds (user_id, key, device_id)
    select x.u, x.k, d.id
    from unnest(${users}::uuid[], ${keys}::text[], ${codes}::text[]) as x(u, k, c)
    left join devices d on d.user_id = x.u and d.code = x.c
    on conflict do nothing`;
}

/**
 * The recorded Sparkplug B BIRTH state (sql/009_sparkplug_state.sql), read and written in
 * the batch's own transaction, so the state exists exactly when the BIRTH is stored.
 *
 * Per batch with Sparkplug messages, one query reads the recorded births of the edge
 * nodes and devices it names (their ids, bdSeq, receive times). Metric tables are cached
 * by birth id (`SparkplugCache`): a BIRTH row is never changed, a new BIRTH gets a new id,
 * so a cached table can be stale only by being unused; and as the births themselves are
 * read every batch, an instance of a shared group sees another's rebirth at once. Only
 * the tables not cached cost a second query.
 */
import { LookupCache } from "../lookup_cache.ts";
import type { DecodedMessage } from "../../core/message.ts";
import { timestampOfUs } from "../../db/timestamps.ts";
import type { Transaction } from "../../db/transaction.ts";
import {
  type KnownBirth,
  type MetricDef,
  type MetricTable,
  type NewBirth,
  nodeKey,
  scopeKey,
  type SparkplugState,
} from "./sparkplug_resolve.ts";

/** Metric tables of recorded births, by birth id. */
export class SparkplugCache extends LookupCache<MetricTable> {}

/** Births (edge nodes and devices) whose metric tables a cache keeps at most. */
export const DEFAULT_SPARKPLUG_CACHE_SIZE = 10_000;

/** Does `batch` hold a Sparkplug message? (Batches without pay nothing.) */
export function hasSparkplug(batch: readonly DecodedMessage[]): boolean {
  for (const m of batch) if (m.decoded.kind === "sparkplug") return true;
  return false;
}

interface ScopeRef {
  userId: string;
  groupId: string;
  edgeNode: string;
  device: string;
}

/**
 * The recorded state the Sparkplug messages of `batch` need: the births of their edge
 * nodes and devices (all the devices of an NDEATH's node), and the metric tables of those
 * a DATA message is decoded by.
 */
export async function loadSparkplugState(
  tx: Transaction,
  batch: readonly DecodedMessage[],
  cache: SparkplugCache | undefined,
): Promise<SparkplugState> {
  const scopes = new Map<string, ScopeRef>();
  const deathNodes = new Map<string, ScopeRef>();
  const dataScopes = new Set<string>();
  for (const { decoded } of batch) {
    if (decoded.kind !== "sparkplug") continue;
    const sp = decoded.sparkplug;
    const key = scopeKey(decoded.userId, sp);
    const ref = {
      userId: decoded.userId,
      groupId: sp.groupId,
      edgeNode: sp.edgeNodeId,
      device: sp.deviceId ?? "",
    };
    scopes.set(key, ref);
    if (sp.type === "NDATA" || sp.type === "DDATA") dataScopes.add(key);
    if (sp.type === "NDEATH") deathNodes.set(nodeKey(decoded.userId, sp), ref);
  }
  const state: SparkplugState = { births: new Map(), devicesOf: new Map() };
  const s = [...scopes.values()];
  const n = [...deathNodes.values()];
  const rows = await tx<
    {
      id: string;
      user_id: string;
      group_id: string;
      edge_node: string;
      device: string;
      bd_seq: string | null;
      received_us: string;
    }[]
  >`
    select b.id, b.user_id, b.group_id, b.edge_node, b.device, b.bd_seq,
           (extract(epoch from b.received_at) * 1000000)::int8 as received_us
    from sparkplug_births b
    join unnest(${s.map((r) => r.userId)}::uuid[], ${s.map((r) => r.groupId)}::text[],
                ${s.map((r) => r.edgeNode)}::text[], ${s.map((r) => r.device)}::text[])
      as x(u, g, e, d)
      on b.user_id = x.u and b.group_id = x.g and b.edge_node = x.e and b.device = x.d
    union
    select b.id, b.user_id, b.group_id, b.edge_node, b.device, b.bd_seq,
           (extract(epoch from b.received_at) * 1000000)::int8
    from sparkplug_births b
    join unnest(${n.map((r) => r.userId)}::uuid[], ${n.map((r) => r.groupId)}::text[],
                ${n.map((r) => r.edgeNode)}::text[]) as x(u, g, e)
      on b.user_id = x.u and b.group_id = x.g and b.edge_node = x.e and b.device <> ''`;
  const missing: number[] = [];
  const now = Date.now();
  for (const row of rows) {
    const ids = { groupId: row.group_id, edgeNodeId: row.edge_node };
    const key = `${nodeKey(row.user_id, ids)}\u0000${row.device}`;
    const birth: KnownBirth = {
      id: Number(row.id),
      bdSeq: row.bd_seq === null ? null : Number(row.bd_seq),
      receivedUs: Number(row.received_us),
    };
    state.births.set(key, birth);
    if (row.device !== "") {
      const node = nodeKey(row.user_id, ids);
      let set = state.devicesOf.get(node);
      if (!set) state.devicesOf.set(node, set = new Set());
      set.add(row.device);
    }
    if (!dataScopes.has(key)) continue;
    birth.table = cache?.get(row.id, now);
    if (!birth.table) missing.push(birth.id);
  }
  if (missing.length > 0) {
    const tables = await loadTables(tx, missing);
    for (const birth of state.births.values()) {
      if (birth.table || !tables.has(birth.id)) continue;
      birth.table = tables.get(birth.id)!;
      cache?.set(String(birth.id), birth.table, now);
    }
  }
  return state;
}

async function loadTables(tx: Transaction, ids: number[]): Promise<Map<number, MetricTable>> {
  const rows = await tx<
    { birth_id: string; name: string; alias: string | null; datatype: number | null }[]
  >`
    select birth_id, name, alias, datatype from sparkplug_metrics
    where birth_id = any(${ids}::int8[])`;
  const tables = new Map<number, MetricTable>();
  for (const id of ids) tables.set(id, { byAlias: new Map(), byName: new Map() });
  for (const row of rows) {
    const table = tables.get(Number(row.birth_id))!;
    const def: MetricDef = {
      name: row.name,
      alias: row.alias === null ? null : Number(row.alias),
      datatype: row.datatype,
    };
    table.byName.set(def.name, def);
    if (def.alias !== null) table.byAlias.set(def.alias, def);
  }
  return tables;
}

/**
 * Records `births` (one per edge node or device, the batch's last): each replaces the
 * recorded one only when that was received earlier, and its metric table is cached by
 * its new id (an id is never reused, even when this transaction rolls back).
 */
export async function writeBirths(
  tx: Transaction,
  births: readonly NewBirth[],
  cache: SparkplugCache | undefined,
): Promise<void> {
  if (births.length === 0) return;
  const users = births.map((b) => b.userId);
  const groups = births.map((b) => b.groupId);
  const edges = births.map((b) => b.edgeNode);
  const devices = births.map((b) => b.device);
  const received = births.map((b) => b.receivedUs);
  await tx`
    delete from sparkplug_births b
    using unnest(${users}::uuid[], ${groups}::text[], ${edges}::text[], ${devices}::text[],
                 ${received}::int8[]) as x(u, g, e, d, r)
    where b.user_id = x.u and b.group_id = x.g and b.edge_node = x.e and b.device = x.d
      and b.received_at < ${timestampOfUs(tx, "x.r")}`;
  // A newer BIRTH another instance recorded meanwhile stays (on conflict do nothing).
  const inserted = await tx<
    { id: string; user_id: string; group_id: string; edge_node: string; device: string }[]
  >`
    insert into sparkplug_births (user_id, group_id, edge_node, device, bd_seq, born_at,
                                  received_at)
    select u, g, e, d, s, ${timestampOfUs(tx, "b")}, ${timestampOfUs(tx, "r")}
    from unnest(${users}::uuid[], ${groups}::text[], ${edges}::text[], ${devices}::text[],
                ${births.map((b) => b.bdSeq)}::int8[], ${births.map((b) => b.bornUs)}::int8[],
                ${received}::int8[]) as x(u, g, e, d, s, b, r)
    on conflict do nothing
    returning id, user_id, group_id, edge_node, device`;
  const byKey = new Map(
    births.map((b) => [birthKey(b.userId, b.groupId, b.edgeNode, b.device), b]),
  );
  const ids: number[] = [];
  const names: string[] = [];
  const aliases: (number | null)[] = [];
  const types: (number | null)[] = [];
  const now = Date.now();
  for (const row of inserted) {
    const birth = byKey.get(birthKey(row.user_id, row.group_id, row.edge_node, row.device))!;
    const id = Number(row.id);
    for (const def of birth.defs) {
      ids.push(id);
      names.push(def.name);
      aliases.push(def.alias);
      types.push(def.datatype);
    }
    cache?.set(row.id, birth.table, now);
  }
  if (ids.length === 0) return;
  await tx`
    insert into sparkplug_metrics (birth_id, name, alias, datatype)
    select * from unnest(${ids}::int8[], ${names}::text[], ${aliases}::int8[], ${types}::int4[])`;
}

function birthKey(user: string, group: string, edge: string, device: string): string {
  return `${user}\u0000${group}\u0000${edge}\u0000${device}`;
}

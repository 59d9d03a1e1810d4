/**
 * The Sparkplug B topic namespace: `spBv1.0/{group_id}/{message_type}/{edge_node_id}` and,
 * for the messages of a device behind the edge node, `/{device_id}` after it
 * (docs/topics-and-payloads.md, "Sparkplug B"). Pure; a topic that is not one of the six
 * message types feedline ingests is no match.
 */

/** The message types feedline ingests (commands and host STATE are not subscribed to). */
export type SparkplugType = "NBIRTH" | "NDEATH" | "NDATA" | "DBIRTH" | "DDEATH" | "DDATA";

const NODE_TYPES = new Set(["NBIRTH", "NDEATH", "NDATA"]);
const DEVICE_TYPES = new Set(["DBIRTH", "DDEATH", "DDATA"]);

/** The namespace of Sparkplug B topics (the first topic level). */
export const SPARKPLUG_NAMESPACE = "spBv1.0";

/** What a Sparkplug topic names. */
export interface SparkplugTopic {
  type: SparkplugType;
  groupId: string;
  edgeNodeId: string;
  /** Null for the edge node's own messages (NBIRTH, NDEATH, NDATA). */
  deviceId: string | null;
}

/**
 * The subscription filters of the six types, under `namespace` (`spBv1.0`, or a bridge's
 * prefix before it): only what feedline ingests, so its own rebirth commands (NCMD) and
 * host STATE messages never come back to it.
 */
export function sparkplugFilters(namespace: string): string[] {
  return [
    ...[...NODE_TYPES].map((t) => `${namespace}/+/${t}/+`),
    ...[...DEVICE_TYPES].map((t) => `${namespace}/+/${t}/+/+`),
  ];
}

/** Does `topic` lie under `namespace`? (Cheap: decode routes by it for every message.) */
export function isUnderNamespace(topic: string, namespace: string): boolean {
  return topic.length > namespace.length && topic.startsWith(namespace) &&
    topic.charCodeAt(namespace.length) === 0x2f; /* / */
}

/** Parses a topic under `namespace`; null when it is not one of the six types. */
export function parseSparkplugTopic(topic: string, namespace: string): SparkplugTopic | null {
  if (!isUnderNamespace(topic, namespace)) return null;
  const levels = topic.slice(namespace.length + 1).split("/");
  if (levels.length < 3 || levels.length > 4 || levels.some((l) => l === "")) return null;
  const [groupId, type, edgeNodeId, deviceId] = levels;
  if (levels.length === 3 ? !NODE_TYPES.has(type) : !DEVICE_TYPES.has(type)) return null;
  return { type: type as SparkplugType, groupId, edgeNodeId, deviceId: deviceId ?? null };
}

/** The topic of a message of `type` (simulate, tests) or a command (`NCMD`). */
export function sparkplugTopic(
  namespace: string,
  groupId: string,
  type: SparkplugType | "NCMD",
  edgeNodeId: string,
  deviceId?: string | null,
): string {
  const base = `${namespace}/${groupId}/${type}/${edgeNodeId}`;
  return deviceId ? `${base}/${deviceId}` : base;
}

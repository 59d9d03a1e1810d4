/**
 * What serve does for Sparkplug B after a commit (docs/topics-and-payloads.md, "Sparkplug
 * B"; docs/operations.md): it counts sequence gaps, and, with `--sparkplug-rebirth`, asks an
 * edge node whose DATA named an alias no recorded BIRTH declares for a new BIRTH.
 *
 * - Sequence numbers: each edge node numbers its messages 0–255 in turn (the NBIRTH
 *   starts it again). A message whose `seq` does not follow the last committed one of its
 *   node counts one gap in `feedline_sparkplug_seq_gaps_total`; nothing is rejected for it.
 *   In a shared group each instance sees only part of a node's messages, so it counts gaps
 *   that are not lost messages.
 * - Rebirth: one NCMD `Node Control/Rebirth` (QoS 0) to the edge node, published after the
 *   commit that dead-lettered the DATA, at most once per `REBIRTH_INTERVAL_MS` per edge node.
 */
import type { DecodedMessage, RejectReason } from "../core/message.ts";
import { encodeWire } from "../core/sparkplug/schema.ts";
import { nodeKey } from "../ingest/write/sparkplug_resolve.ts";
import { parseSparkplugTopic, sparkplugTopic } from "../core/sparkplug/topic.ts";
import type { Registry } from "../prometheus.ts";
import { Counter } from "../prometheus.ts";

/** The least time between two rebirth requests to one edge node. */
export const REBIRTH_INTERVAL_MS = 60_000;
/** Edge nodes tracked at once (sequence and rebirth); beyond it the oldest are forgotten. */
const MAX_TRACKED_NODES = 100_000;

/** What the Sparkplug operations need. */
export interface SparkplugOpsOptions {
  registry: Registry;
  /** The namespace of Sparkplug topics, null when Sparkplug is off. */
  namespace: string | null;
  rebirth: boolean;
  /** Publishes QoS 0 without waiting; false when not connected. */
  publish(topic: string, payload: Uint8Array): boolean;
  now?: () => number;
}

/** The after-commit side of Sparkplug; see the module doc. */
export interface SparkplugOps {
  committed(
    messages: readonly { pending: DecodedMessage }[],
    rejects: readonly { topic: string; reason: RejectReason }[],
  ): void;
}

/** The NCMD payload that asks an edge node for a new BIRTH. */
export function rebirthCommand(nowMs: number): Uint8Array {
  return encodeWire({
    timestamp: nowMs,
    metrics: [{ name: "Node Control/Rebirth", timestamp: nowMs, datatype: 11, booleanValue: true }],
  });
}

/** Creates the counters (always, so /metrics is the same whatever the options) and the logic. */
export function createSparkplugOps(opts: SparkplugOpsOptions): SparkplugOps {
  const gaps = opts.registry.add(
    new Counter(
      "feedline_sparkplug_seq_gaps_total",
      "Sparkplug B messages whose seq did not follow the last committed one of their edge node.",
    ),
  );
  const rebirths = opts.registry.add(
    new Counter(
      "feedline_sparkplug_rebirths_total",
      "Sparkplug B rebirth requests (NCMD Node Control/Rebirth), by outcome (published, " +
        "rate_limited, not_connected).",
    ),
  );
  for (const outcome of ["published", "rate_limited", "not_connected"]) rebirths.init({ outcome });
  gaps.inc(undefined, 0);
  const lastSeq = new Map<string, number>();
  const lastRebirth = new Map<string, number>();
  const now = opts.now ?? Date.now;
  const remember = <V>(map: Map<string, V>, key: string, value: V) => {
    map.delete(key);
    if (map.size >= MAX_TRACKED_NODES) map.delete(map.keys().next().value!);
    map.set(key, value);
  };

  return {
    committed(messages, rejects) {
      if (opts.namespace === null) return;
      for (const { pending: { decoded } } of messages) {
        if (decoded.kind !== "sparkplug" || decoded.sparkplug.seq === null) continue;
        const sp = decoded.sparkplug;
        const key = nodeKey(decoded.userId, sp);
        const last = lastSeq.get(key);
        if (sp.type !== "NBIRTH" && last !== undefined && sp.seq !== (last + 1) % 256) gaps.inc();
        remember(lastSeq, key, sp.seq!);
      }
      if (!opts.rebirth) return;
      for (const r of rejects) {
        if (r.reason !== "sparkplug_unknown_alias") continue;
        const topic = parseSparkplugTopic(r.topic, opts.namespace);
        if (!topic) continue;
        const key = `${topic.groupId}\u0000${topic.edgeNodeId}`;
        const at = now();
        const last = lastRebirth.get(key);
        if (last !== undefined && at - last < REBIRTH_INTERVAL_MS) {
          rebirths.inc({ outcome: "rate_limited" });
          continue;
        }
        const ncmd = sparkplugTopic(opts.namespace, topic.groupId, "NCMD", topic.edgeNodeId);
        if (!opts.publish(ncmd, rebirthCommand(at))) {
          rebirths.inc({ outcome: "not_connected" });
          continue;
        }
        remember(lastRebirth, key, at);
        rebirths.inc({ outcome: "published" });
      }
    },
  };
}

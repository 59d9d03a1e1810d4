/**
 * Sparkplug B as the payload format of a mapping rule (`"format": "sparkplug"`,
 * deploy/mappings/sparkplug-b.json): the rule gives the tenant, the decoder does the rest
 * from the topic and payload, as for `serve --sparkplug-tenant` (docs/topics-and-payloads.md,
 * "Sparkplug B"). The rule's `options` may set the namespace and the metric limit.
 */
import { z } from "zod";
import type { Decoded } from "../message.ts";
import { decodeSparkplug, DEFAULT_SPARKPLUG_MAX_METRICS, type SparkplugLimits } from "./decode.ts";
import { SPARKPLUG_NAMESPACE } from "./topic.ts";

/** A rule's `options`: `{"namespace": "spBv1.0", "max_metrics": 10000}`, both optional. */
export const sparkplugRuleOptions = z.object({
  namespace: z.string().regex(/^[^/+#]+(?:\/[^/+#]+)*$/, "topic levels without + or #")
    .default(SPARKPLUG_NAMESPACE),
  max_metrics: z.number().int().min(1).max(1_000_000).default(DEFAULT_SPARKPLUG_MAX_METRICS),
}).strict().default({ namespace: SPARKPLUG_NAMESPACE, max_metrics: DEFAULT_SPARKPLUG_MAX_METRICS });

/** What a rule knows of a message when its format decodes it. */
export interface SparkplugRuleContext {
  topic: string;
  receivedAtUs: number;
  /** The tenant's user id ("" while an alias awaits the processor's lookup). */
  userId: string;
  limits: SparkplugLimits;
  /** The rule's options, as `sparkplugRuleOptions` parsed them at start. */
  options: z.output<typeof sparkplugRuleOptions>;
}

/** Decodes one message of a `sparkplug` rule; never throws (src/core/sparkplug/decode.ts). */
export function decodeSparkplugRule(payload: Uint8Array, ctx: SparkplugRuleContext): Decoded {
  return decodeSparkplug(
    { topic: ctx.topic, payload, qos: 0, retain: false, receivedAtUs: ctx.receivedAtUs },
    { userId: ctx.userId, namespace: ctx.options.namespace, maxMetrics: ctx.options.max_metrics },
    ctx.limits,
  );
}

/**
 * `sparkplug`: Sparkplug B as a payload format of mapping rules (src/core/mappings/format.ts
 * has the contract; deploy/mappings/sparkplug-b.json is the recipe). A "self" format: the
 * Sparkplug decoder (src/core/sparkplug/rule.ts) reads the topic and payload itself and
 * answers a Sparkplug message, whose aliases the processor resolves
 * (src/ingest/write/sparkplug.ts); the rule gives the tenant, and its `options` the
 * namespace and the metric limit.
 */
import type { z } from "zod";
import { decodeSparkplugRule, sparkplugRuleOptions } from "../sparkplug/rule.ts";
import type { PayloadFormat } from "./format.ts";

export const sparkplugFormat: PayloadFormat = {
  name: "sparkplug",
  shape: "self",
  optionsSchema: sparkplugRuleOptions,
  decode(payload, ctx) {
    const decoded = decodeSparkplugRule(payload, {
      topic: ctx.topic,
      receivedAtUs: ctx.receivedAtUs,
      userId: ctx.tenant.userId,
      limits: ctx.limits,
      options: ctx.options as z.output<typeof sparkplugRuleOptions>,
    });
    return { kind: "decoded", decoded };
  },
};

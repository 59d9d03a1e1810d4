/**
 * The Sparkplug B options (docs/topics-and-payloads.md, "Sparkplug B"): serve and replay
 * share `sparkplugOptions`; only serve has `--sparkplug-rebirth`, as only serve talks to
 * the edge nodes.
 */
import { z } from "zod";
import { option, zs } from "./options.ts";
import { DEFAULT_SPARKPLUG_MAX_METRICS, type SparkplugRoute } from "../core/sparkplug/decode.ts";
import { SPARKPLUG_NAMESPACE } from "../core/sparkplug/topic.ts";

/** Options serve and replay share. */
export const sparkplugOptions = {
  sparkplugTenant: option({
    flag: "sparkplug-tenant",
    env: "FEEDLINE_SPARKPLUG_TENANT",
    schema: z.string().trim().regex(/^[^\s/+#]{1,200}$/, "a user id or a tenant alias")
      .optional(),
    defaultText: "off",
    doc: "Ingest Sparkplug B: every message under --sparkplug-namespace belongs to this " +
      "user (its UUID, or an alias in tenant_aliases, looked up at start).",
  }),
  sparkplugNamespace: option({
    flag: "sparkplug-namespace",
    env: "FEEDLINE_SPARKPLUG_NAMESPACE",
    schema: z.string().regex(/^[^/+#]+(?:\/[^/+#]+)*$/, "topic levels without + or #")
      .default(SPARKPLUG_NAMESPACE),
    defaultText: SPARKPLUG_NAMESPACE,
    doc: "First level(s) of Sparkplug topics; change it only when a bridge puts them under " +
      "a prefix (site1/spBv1.0).",
  }),
  sparkplugMaxMetrics: option({
    flag: "sparkplug-max-metrics",
    env: "FEEDLINE_SPARKPLUG_MAX_METRICS",
    schema: zs.int(1, 1_000_000).default(DEFAULT_SPARKPLUG_MAX_METRICS),
    defaultText: String(DEFAULT_SPARKPLUG_MAX_METRICS),
    doc: "Sparkplug payloads with more metrics are rejected as too_large.",
  }),
  sparkplugRegister: option({
    flag: "sparkplug-register",
    env: "FEEDLINE_SPARKPLUG_REGISTER",
    schema: zs.bool().default(true),
    defaultText: "on",
    doc: "A BIRTH creates its device and a feed per metric that are missing; off: register " +
      "them yourself (else unknown_device / unknown_feed).",
    boolean: true,
  }),
};

/** serve's own. */
export const sparkplugRebirthOption = {
  sparkplugRebirth: option({
    flag: "sparkplug-rebirth",
    env: "FEEDLINE_SPARKPLUG_REBIRTH",
    schema: zs.bool().default(false),
    defaultText: "off",
    doc: "On a DATA with an alias no recorded BIRTH declares, ask its edge node for a new " +
      "BIRTH (NCMD Node Control/Rebirth), at most once a minute per edge node.",
    boolean: true,
  }),
};

/**
 * The route of Sparkplug messages, or undefined when --sparkplug-tenant is unset. A UUID
 * tenant is taken as it is; an alias leaves `userId` empty until it is looked up at start
 * (src/ingest/sparkplug_tenant.ts).
 */
export function sparkplugRouteOf(values: {
  sparkplugTenant?: string;
  sparkplugNamespace: string;
  sparkplugMaxMetrics: number;
}): SparkplugRoute | undefined {
  if (values.sparkplugTenant === undefined) return undefined;
  return {
    userId: "",
    namespace: values.sparkplugNamespace,
    maxMetrics: values.sparkplugMaxMetrics,
  };
}

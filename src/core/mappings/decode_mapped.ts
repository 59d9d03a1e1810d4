/**
 * Decoding by mapping rules (`serve --mappings FILE`, docs/topics-and-payloads.md,
 * "Mappings"): the topic picks a rule (src/core/mappings/matcher.ts), the rule's levels
 * give the tenant and device, its format turns the payload into a tree
 * (src/core/mappings/format.ts), and its `readings` or `status` say what the tree holds.
 * The same limits and reject reasons as the three templates apply; a tenant named by an
 * alias is left for the processor to resolve (`Decoded.tenantAlias`).
 *
 * Never throws on any topic or payload: what cannot be used is a reject with a reason.
 */
import type { Decoded, DecodedReadings, Inbound, Reading, ReadingReject } from "../message.ts";
import { payloadSizeOf } from "../message.ts";
import {
  DEFAULT_MAX_TOPIC_LENGTH,
  futureDetail,
  isUuid,
  type MappedDecoder,
  spreadReceiveStamps,
} from "../decode.ts";
import type { DecodeOptions } from "../decode.ts";
import {
  DEFAULT_MAX_BULK_ENTRIES,
  isValidName,
  parseTimestamp,
  previewJson,
  scalarValue,
} from "../payload.ts";
import type { TopicMatch, TopicRouter } from "../topics.ts";
import type { FormatContext, NamedReading, Tenant } from "./format.ts";
import { compileMatcher, type TopicMatcher } from "./matcher.ts";
import { pathName, valueAt, walkLeaves } from "./paths.ts";
import { type CompiledRule, compileRules, type ReadingsRule, type StatusRule } from "./rules.ts";
import { fillTemplate } from "./templates.ts";

/** Compiled mappings: the decoder, the subscription filters and a router for the rest of serve. */
export interface Mappings extends MappedDecoder {
  rules: readonly CompiledRule[];
  /** One subscription filter per rule. */
  filters: string[];
  /** Does any rule name its tenant by alias (so the processor needs the alias lookup)? */
  usesAliases: boolean;
  /** States of the topic matcher (for the benchmark). */
  matcherStates: number;
  /**
   * The rules as a `TopicRouter`, for what asks only which topics are subscribed and
   * whether one is a status (the intake's drop policy, feedback, the errors topic check).
   */
  router: TopicRouter;
}

/** Compiles a parsed mappings file (`source` names it in errors); throws CONFIG_INVALID. */
export function compileMappings(file: unknown, source: string): Mappings {
  const rules = compileRules(file, source);
  const matcher = compileMatcher(
    rules.map((r) => r.shape),
    rules.map((r) => r.name),
    `mappings ${source}`,
  );
  const filters = rules.map((r) => r.filter);
  const router: TopicRouter = {
    templates: [],
    filters,
    match: (topic) => routeOf(rules, matcher, topic),
  };
  return {
    rules,
    filters,
    usesAliases: rules.some((r) => r.tenant.kind === "alias"),
    matcherStates: matcher.states,
    router,
    decode: (msg, opts) => decodeMapped(rules, matcher, msg, opts),
  };
}

function routeOf(
  rules: readonly CompiledRule[],
  matcher: TopicMatcher,
  topic: string,
): TopicMatch | null {
  if (topic.startsWith("$")) return null;
  const levels = topic.split("/");
  const i = matcher.match(levels);
  if (i === -1) return null;
  const rule = rules[i];
  const tenant = tenantOf(rule, levels);
  return {
    kind: rule.status ? "status" : "feeds",
    userId: tenant && tenant.alias === undefined ? tenant.userId : "",
    deviceCode: fillTemplate(rule.device, levels),
    feedKey: "",
  };
}

function reject(reason: ReadingReject["reason"], detail: string): Decoded {
  return { kind: "reject", reason, detail };
}

function tenantOf(rule: CompiledRule, levels: readonly string[]): Tenant | null {
  const t = rule.tenant;
  if (t.kind === "fixed") return { userId: t.userId };
  const value = fillTemplate(t.parts, levels);
  if (t.kind === "alias") return isValidName(value) ? { userId: "", alias: value } : null;
  return isUuid(value) ? { userId: value.toLowerCase() } : null;
}

function decodeMapped(
  rules: readonly CompiledRule[],
  matcher: TopicMatcher,
  msg: Inbound,
  opts: DecodeOptions,
): Decoded {
  const maxTopic = opts.maxTopicLength ?? DEFAULT_MAX_TOPIC_LENGTH;
  if (msg.topic.length > maxTopic) {
    return reject("bad_topic", `topic is ${msg.topic.length} characters; the limit is ${maxTopic}`);
  }
  const levels = msg.topic.startsWith("$") ? [] : msg.topic.split("/");
  const index = levels.length === 0 ? -1 : matcher.match(levels);
  if (index === -1) return reject("bad_topic", "topic matches no mapping rule");
  const rule = rules[index];
  const tenant = tenantOf(rule, levels);
  if (tenant === null) {
    return rule.tenant.kind === "alias"
      ? reject("bad_topic", `rule "${rule.name}": tenant alias too long or has control characters`)
      : reject("bad_user_id", `rule "${rule.name}": user id is not a UUID`);
  }
  const deviceCode = fillTemplate(rule.device, levels);
  if (!isValidName(deviceCode)) {
    return reject(
      "bad_topic",
      `rule "${rule.name}": device code too long or has control characters`,
    );
  }
  if (payloadSizeOf(msg) > opts.maxPayloadBytes) {
    return reject(
      "too_large",
      `payload is ${payloadSizeOf(msg)} bytes; the limit is ${opts.maxPayloadBytes}`,
    );
  }
  // As on the templates' topics (src/core/decode.ts): an empty payload clears a retained one.
  if (msg.payload.byteLength === 0) return { kind: "skip", reason: "retained_cleared" };

  const named: Record<string, string> = Object.create(null);
  for (const [name, i] of rule.levelNames) named[name] = levels[i];
  const ctx: FormatContext = {
    topic: msg.topic,
    levels: named,
    tenant,
    deviceCode,
    receivedAtUs: msg.receivedAtUs,
    limits: opts,
    options: rule.options,
  };
  const out = rule.format.decode(msg.payload, ctx);
  const base = { userId: tenant.userId, deviceCode, ...aliasOf(tenant) };
  const latestUs = msg.receivedAtUs + opts.maxFutureSkewMs * 1000;
  switch (out.kind) {
    case "reject":
    case "skip":
      return out;
    case "decoded":
      return ownedBy(out.decoded, tenant);
    case "status":
      if (out.tsUs !== null && out.tsUs > latestUs) {
        return reject("future_timestamp", futureDetail(out.tsUs));
      }
      return { kind: "status", ...base, status: out.status, details: out.details, tsUs: out.tsUs };
    case "readings":
      return readingsOf(rule, levels, base, out.readings, out.rejects, latestUs);
  }
  // A tree: the rule says what it holds.
  if (!whenHolds(rule, out.tree)) return { kind: "skip", reason: "not_mapped" };
  const tsUs = timeOf(rule, out.tree);
  if (tsUs === "bad") {
    return reject(
      "bad_timestamp",
      `unparsable time at ${rule.time!.join(".")}: ${previewJson(valueAt(out.tree, rule.time!))}`,
    );
  }
  if (tsUs !== null && tsUs > latestUs) return reject("future_timestamp", futureDetail(tsUs));
  if (rule.status) return statusOf(rule.status, out.tree, base, tsUs);
  if (!rule.readings) {
    // A "self" format broke its contract (src/core/mappings/format.ts): a bug of ours.
    return reject("internal_error", `format ${rule.format.name} answered a tree`);
  }
  const found = treeReadings(rule.readings, valueAt(out.tree, rule.root), tsUs, opts);
  if (found === "too_many") {
    const max = opts.maxBulkEntries ?? DEFAULT_MAX_BULK_ENTRIES;
    return reject("too_large", `rule "${rule.name}": more than ${max} readings in one message`);
  }
  // Nothing the rule takes (every field ignored or absent: a Shelly `sys` notification, a
  // button's bare `action`): skipped and counted, as a `when` that does not hold.
  if (found.readings.length === 0 && found.rejects.length === 0) {
    return { kind: "skip", reason: "not_mapped" };
  }
  return readingsOf(rule, levels, base, found.readings, found.rejects, latestUs);
}

/** A format's own `Decoded`, named by the rule's tenant alias when it has one. */
function ownedBy(decoded: Decoded, tenant: Tenant): Decoded {
  if (tenant.alias === undefined || decoded.kind === "reject" || decoded.kind === "skip") {
    return decoded;
  }
  return { ...decoded, userId: "", tenantAlias: tenant.alias };
}

function aliasOf(tenant: Tenant): { tenantAlias?: string } {
  return tenant.alias === undefined ? {} : { tenantAlias: tenant.alias };
}

/** Does every path of the rule's `when` hold one of its words? */
function whenHolds(rule: CompiledRule, tree: unknown): boolean {
  for (const { path, words } of rule.when) {
    const v = valueAt(tree, path);
    const t = typeof v;
    if (!(t === "string" || t === "number" || t === "boolean") || !words.has(String(v))) {
      return false;
    }
  }
  return true;
}

/** The rule's time in the tree: µs, null when the rule or the payload has none, "bad" when unparsable. */
function timeOf(rule: CompiledRule, tree: unknown): number | null | "bad" {
  if (rule.time === null) return null;
  const raw = valueAt(tree, rule.time);
  if (raw === undefined || raw === null) return null;
  return parseTimestamp(raw) ?? "bad";
}

function treeReadings(
  spec: ReadingsRule,
  tree: unknown,
  tsUs: number | null,
  opts: DecodeOptions,
): { readings: NamedReading[]; rejects: ReadingReject[] } | "too_many" {
  const readings: NamedReading[] = [];
  const rejects: ReadingReject[] = [];
  const add = (name: string, raw: unknown) => {
    const v = scalarValue(typeof raw === "bigint" ? Number(raw) : raw, opts);
    if (v.ok) readings.push({ name, value: v.value, text: v.text, tsUs });
    else rejects.push({ reason: v.reason, detail: `${name}: ${v.detail}` });
  };
  if (spec.kind === "picked") {
    for (const { name, path } of spec.picks) {
      const raw = valueAt(tree, path);
      // A field the device does not send (now) is no reading, not an error.
      if (raw === undefined || raw === null) continue;
      if (raw instanceof Uint8Array) {
        rejects.push({ reason: "bad_payload", detail: `${name}: bytes are not a value` });
      } else add(name, raw);
    }
    return { readings, rejects };
  }
  if (tree === null || typeof tree !== "object" || tree instanceof Uint8Array) {
    return {
      readings,
      rejects: [{ reason: "bad_payload", detail: "the payload is not an object or array" }],
    };
  }
  const walk = {
    text: spec.text,
    ignore: spec.ignore,
    maxLeaves: opts.maxBulkEntries ?? DEFAULT_MAX_BULK_ENTRIES,
  };
  const result = walkLeaves(tree, walk, (path, raw) => add(pathName(path), raw));
  return result === "too_many" ? "too_many" : { readings, rejects };
}

function readingsOf(
  rule: CompiledRule,
  levels: readonly string[],
  base: { userId: string; deviceCode: string; tenantAlias?: string },
  found: readonly NamedReading[],
  rejects: ReadingReject[],
  latestUs: number,
): Decoded {
  const readings: Reading[] = [];
  for (const r of found) {
    const feedKey = fillTemplate(rule.feedKey, levels, r.name);
    if (!isValidName(feedKey)) {
      rejects.push({
        reason: "bad_payload",
        detail: `feed key ${JSON.stringify(feedKey.slice(0, 60))} is not 1 to 128 printable ` +
          "characters without + # /",
      });
    } else if (r.tsUs !== null && r.tsUs > latestUs) {
      rejects.push({ reason: "future_timestamp", detail: `${feedKey}: ${futureDetail(r.tsUs)}` });
    } else {
      readings.push({ feedKey, value: r.value, text: r.text, tsUs: r.tsUs });
    }
  }
  if (readings.length === 0 && rejects.length === 1) return { kind: "reject", ...rejects[0] };
  if (readings.length === 0 && rejects.length === 0) return { kind: "skip", reason: "not_mapped" };
  if (readings.length > 1) spreadReceiveStamps(readings);
  const decoded: DecodedReadings = { kind: "readings", ...base, readings, rejects };
  return decoded;
}

function statusOf(
  spec: StatusRule,
  tree: unknown,
  base: { userId: string; deviceCode: string; tenantAlias?: string },
  tsUs: number | null,
): Decoded {
  const isObject = tree !== null && typeof tree === "object" && !Array.isArray(tree) &&
    !(tree instanceof Uint8Array);
  // A path into an object; a payload that is a bare word or value is the word itself
  // (Zigbee2MQTT sends `{"state":"online"}` or, in its legacy mode, `online`).
  const raw = spec.path !== null && isObject ? valueAt(tree, spec.path) : tree;
  const word = typeof raw === "string"
    ? raw.trim().toLowerCase()
    : typeof raw === "boolean" || typeof raw === "number"
    ? String(raw)
    : null;
  if (word !== null && spec.online.has(word)) {
    return statusDecoded(base, "online", isObject ? tree as Record<string, unknown> : null, tsUs);
  }
  if (word !== null && spec.offline.has(word)) {
    return statusDecoded(base, "offline", isObject ? tree as Record<string, unknown> : null, tsUs);
  }
  return reject(
    "bad_status",
    `unknown status ${JSON.stringify(previewJson(raw ?? ""))}; expected ${
      [...spec.online, ...spec.offline].join(" or ")
    }`,
  );
}

function statusDecoded(
  base: { userId: string; deviceCode: string; tenantAlias?: string },
  status: "online" | "offline",
  details: Record<string, unknown> | null,
  tsUs: number | null,
): Decoded {
  return { kind: "status", ...base, status, details, tsUs };
}

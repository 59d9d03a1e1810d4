/**
 * The mappings file (`serve --mappings FILE`, docs/topics-and-payloads.md, "Mappings"):
 * its schema, and its rules compiled once at start. A file that is wrong stops the
 * command with one line naming the rule and the field.
 *
 * ```json
 * {
 *   "tenant": { "alias": "zigbee2mqtt" },
 *   "rules": [
 *     { "name": "state", "topic": "zigbee2mqtt/{device}", "readings": "all",
 *       "ignore": ["linkquality"], "time": "last_seen" },
 *     { "name": "availability", "topic": "zigbee2mqtt/{device}/availability",
 *       "status": { "path": "state" } }
 *   ]
 * }
 * ```
 */
import { z } from "zod";
import { FeedlineError } from "../../errors.ts";
import { isUuid } from "../decode.ts";
import { isValidName } from "../payload.ts";
import type { PayloadFormat } from "./format.ts";
import { parsePath, type Path, PathPatterns } from "./paths.ts";
import { formatNamed, formatNames, RESERVED_FORMATS } from "./registry.ts";
import { compileTemplate, literalOf, type TemplatePart, usesPath } from "./templates.ts";

const text = z.string().trim().min(1, "a non-empty text");
const textList = z.array(text).min(1, "a list of at least one text");

const tenantSchema = z.union([
  z.object({ user_id: text }).strict(),
  z.object({ alias: text }).strict(),
], {
  error: 'an object with "user_id" (a UUID or a {level}) or "alias" (a text or a {level})',
});

const comment = z.union([z.string(), z.array(z.string())]).optional();

const ruleSchema = z.object({
  comment,
  name: text.max(100, "at most 100 characters"),
  topic: text,
  tenant: tenantSchema.optional(),
  device: text.optional(),
  format: text.default("json"),
  options: z.unknown().optional(),
  when: z.record(text, z.union([z.string(), z.number(), z.boolean(), z.array(z.string())]), {
    error: "an object of paths to the value (or list of values) each must have",
  }).optional(),
  root: text.optional(),
  readings: z.union([z.literal("all"), textList, z.record(text, text)], {
    error: '"all", a list of paths, or an object of names to paths',
  }).optional(),
  text: textList.optional(),
  ignore: textList.optional(),
  time: text.optional(),
  feed_key: text.optional(),
  status: z.object({
    path: text.optional(),
    online: textList.optional(),
    offline: textList.optional(),
  }).strict().optional(),
}).strict();

const fileSchema = z.object({
  comment,
  tenant: tenantSchema.optional(),
  rules: z.array(z.unknown()).min(1, "a list of at least one rule").max(
    10_000,
    "at most 10000 rules",
  ),
}).strict();

type RuleInput = z.infer<typeof ruleSchema>;

/** How a rule finds the tenant of a message. */
export type TenantRule =
  | { kind: "fixed"; userId: string }
  | { kind: "user_id"; parts: TemplatePart[] }
  | { kind: "alias"; parts: TemplatePart[] };

/** What a rule maps a tree payload to: readings. */
export type ReadingsRule =
  | { kind: "all"; text: PathPatterns; ignore: PathPatterns }
  | { kind: "picked"; picks: { name: string; path: Path }[] };

/** What a rule maps a tree payload to: a device status. */
export interface StatusRule {
  path: Path | null;
  online: ReadonlySet<string>;
  offline: ReadonlySet<string>;
}

/** One rule, compiled. */
export interface CompiledRule {
  name: string;
  topic: string;
  /** Its subscription filter: each wildcard level a `+`. */
  filter: string;
  /** Per level: the literal, or null for a wildcard. */
  shape: (string | null)[];
  /** Named levels, by level index. */
  levelNames: Map<string, number>;
  tenant: TenantRule;
  device: TemplatePart[];
  format: PayloadFormat;
  options: unknown;
  feedKey: TemplatePart[];
  /** Each path's value must be one of its words, else the message is skipped (`not_mapped`). */
  when: { path: Path; words: ReadonlySet<string> }[];
  /** Readings are read below this path (and named relative to it). */
  root: Path;
  readings: ReadingsRule | null;
  time: Path | null;
  status: StatusRule | null;
}

/** A wrong field: where (`readings`, `status.online`) and what it must be. */
class FieldError extends Error {
  constructor(readonly field: string, message: string) {
    super(message);
  }
}

/**
 * Validates and compiles a parsed mappings file; `source` names it in errors. Throws
 * CONFIG_INVALID with one line naming the rule and field that are wrong.
 */
export function compileRules(file: unknown, source: string): CompiledRule[] {
  const prefix = `mappings ${source}`;
  const top = fileSchema.safeParse(file);
  if (!top.success) {
    const issue = top.error.issues[0];
    const field = issue.path.length > 0 ? `${issue.path.join(".")}: ` : "";
    throw new FeedlineError("CONFIG_INVALID", `${prefix}: ${field}${issue.message}`);
  }
  const names = new Set<string>();
  return top.data.rules.map((raw, i) => {
    const label = `rule ${i + 1}${ruleName(raw)}`;
    const parsed = ruleSchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = issue.path.length > 0 ? `${issue.path.join(".")}: ` : "";
      throw new FeedlineError("CONFIG_INVALID", `${prefix}: ${label}: ${field}${issue.message}`);
    }
    if (names.has(parsed.data.name)) {
      throw new FeedlineError("CONFIG_INVALID", `${prefix}: ${label}: name: used by another rule`);
    }
    names.add(parsed.data.name);
    try {
      return compileRule(parsed.data, top.data.tenant);
    } catch (error) {
      if (!(error instanceof FieldError)) throw error;
      throw new FeedlineError(
        "CONFIG_INVALID",
        `${prefix}: ${label}: ${error.field}: ${error.message}`,
      );
    }
  });
}

function ruleName(raw: unknown): string {
  if (raw === null || typeof raw !== "object" || !Object.hasOwn(raw, "name")) return "";
  const name = (raw as { name: unknown }).name;
  return typeof name === "string" ? ` ("${name.slice(0, 100)}")` : "";
}

const LEVEL_NAME_RE = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/;

function compileRule(r: RuleInput, fileTenant: RuleInput["tenant"]): CompiledRule {
  const { shape, levelNames } = compileTopic(r.topic);
  const format = formatNamed(r.format);
  if (!format) {
    const reserved = RESERVED_FORMATS.includes(r.format)
      ? `"${r.format}" is reserved for a decoder this build does not have; `
      : "";
    throw new FieldError("format", `${reserved}one of ${formatNames().join(", ")}`);
  }
  let options: unknown = undefined;
  if (format.optionsSchema) {
    const parsed = format.optionsSchema.safeParse(r.options);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new FieldError(["options", ...issue.path].join("."), issue.message);
    }
    options = parsed.data;
  } else if (r.options !== undefined) {
    throw new FieldError("options", `format ${format.name} takes no options`);
  }

  const template = (field: string, value: string, withPath = false) => {
    const t = compileTemplate(value, levelNames, withPath);
    if (!t.ok) {
      throw new FieldError(
        field,
        `{${t.unknown}} is not a named level of the topic${withPath ? " nor {path}" : ""}`,
      );
    }
    return t.parts;
  };
  const tenant = compileTenant(r.tenant ?? fileTenant, levelNames, template);
  let deviceText = r.device;
  if (deviceText === undefined) {
    if (!levelNames.has("device")) {
      throw new FieldError("device", "needed: the topic has no {device} level to take it from");
    }
    deviceText = "{device}";
  }
  const device = template("device", deviceText);
  checkLiteralName("device", device);
  const feedKey = template("feed_key", r.feed_key ?? `${deviceText}.{path}`, true);

  const self = format.shape === "self";
  for (const field of ["readings", "status", "time", "text", "ignore", "root", "when"] as const) {
    if (self && r[field] !== undefined) {
      throw new FieldError(field, `not for format ${format.name}, which maps its payload itself`);
    }
  }
  if (!self && (r.readings === undefined) === (r.status === undefined)) {
    throw new FieldError("readings", 'a rule needs either "readings" or "status"');
  }
  if (r.status !== undefined) {
    for (const field of ["text", "ignore", "feed_key", "root"] as const) {
      if (r[field] !== undefined) throw new FieldError(field, "not for a status rule");
    }
  }
  if (r.readings !== "all" && (r.text !== undefined || r.ignore !== undefined)) {
    throw new FieldError(r.text ? "text" : "ignore", 'only with "readings": "all"');
  }
  const root = r.root === undefined ? [] : path("root", r.root);
  const time = r.time === undefined ? null : path("time", r.time);
  const readings = r.readings === undefined ? null : compileReadings(r.readings, r, root, time);
  const several = self || readings?.kind === "all" ||
    (readings?.kind === "picked" && readings.picks.length > 1);
  if (several && r.status === undefined && !usesPath(feedKey)) {
    throw new FieldError("feed_key", "must contain {path}: the rule has more than one reading");
  }
  return {
    name: r.name,
    topic: r.topic,
    filter: shape.map((l) => l ?? "+").join("/"),
    shape,
    levelNames,
    tenant,
    device,
    format,
    options,
    feedKey,
    when: Object.entries(r.when ?? {}).map(([p, v]) => ({
      path: path(`when.${p}`, p),
      words: new Set((Array.isArray(v) ? v : [v]).map((w) => String(w))),
    })),
    root,
    readings,
    time,
    status: r.status === undefined ? null : compileStatus(r.status),
  };
}

function compileTopic(
  topic: string,
): { shape: (string | null)[]; levelNames: Map<string, number> } {
  if (topic.startsWith("$")) {
    throw new FieldError("topic", "must not start with $ (the broker's own topics)");
  }
  const shape: (string | null)[] = [];
  const levelNames = new Map<string, number>();
  topic.split("/").forEach((level, i) => {
    const named = LEVEL_NAME_RE.exec(level);
    if (named) {
      if (named[1] === "path") throw new FieldError("topic", "{path} is not a level name");
      if (levelNames.has(named[1])) throw new FieldError("topic", `{${named[1]}} appears twice`);
      levelNames.set(named[1], i);
      shape.push(null);
    } else if (level === "+") {
      shape.push(null);
    } else if (level === "" || /[+#{}]/.test(level) || level.includes("\u0000")) {
      throw new FieldError(
        "topic",
        `level "${level}" must be a plain word, a {name} or + (no #, no empty level)`,
      );
    } else {
      shape.push(level);
    }
  });
  return { shape, levelNames };
}

function compileTenant(
  t: RuleInput["tenant"],
  levelNames: Map<string, number>,
  template: (field: string, value: string) => TemplatePart[],
): TenantRule {
  if (t === undefined) {
    if (levelNames.has("user_id")) {
      return { kind: "user_id", parts: template("tenant", "{user_id}") };
    }
    throw new FieldError(
      "tenant",
      'needed here or at the top of the file: {"user_id": ...} or {"alias": ...}',
    );
  }
  if ("alias" in t) {
    const parts = template("tenant.alias", t.alias);
    checkLiteralName("tenant.alias", parts);
    return { kind: "alias", parts };
  }
  const parts = template("tenant.user_id", t.user_id);
  const literal = literalOf(parts);
  if (literal === null) return { kind: "user_id", parts };
  if (!isUuid(literal)) throw new FieldError("tenant.user_id", "a UUID or a {level}");
  return { kind: "fixed", userId: literal.toLowerCase() };
}

function checkLiteralName(field: string, parts: TemplatePart[]): void {
  const literal = literalOf(parts);
  if (literal !== null && !isValidName(literal)) {
    throw new FieldError(field, "1 to 128 printable characters without + # /");
  }
}

function path(field: string, text: string): Path {
  const p = parsePath(text);
  if (p === null) throw new FieldError(field, `"${text}" is not a path (a.b.0, a.b[0] or $)`);
  return p;
}

function compileReadings(
  readings: NonNullable<RuleInput["readings"]>,
  r: RuleInput,
  root: Path,
  time: Path | null,
): ReadingsRule {
  if (readings === "all") {
    const ignore = (r.ignore ?? []).map((t) => path("ignore", t));
    // The time is no reading of its own (Shelly's `ts`, Zigbee2MQTT's epoch `last_seen`).
    if (time && time.length > root.length && root.every((level, i) => time[i] === level)) {
      ignore.push(time.slice(root.length));
    }
    return {
      kind: "all",
      text: new PathPatterns((r.text ?? []).map((t) => path("text", t))),
      ignore: new PathPatterns(ignore),
    };
  }
  const entries = Array.isArray(readings)
    ? readings.map((p) => [p, p] as const)
    : Object.entries(readings);
  const picks = entries.map(([name, p]) => {
    const parsed = path("readings", p);
    if (Array.isArray(readings) && parsed.length === 0) {
      throw new FieldError("readings", 'give the whole payload a name: {"POWER": "$"}');
    }
    // A path named by itself is named with dots (`a[0]` is `a.0`), as "all" names it.
    return { name: Array.isArray(readings) ? parsed.join(".") : name, path: parsed };
  });
  return { kind: "picked", picks };
}

function compileStatus(s: NonNullable<RuleInput["status"]>): StatusRule {
  const online = new Set((s.online ?? ["online"]).map((w) => w.toLowerCase()));
  const offline = new Set((s.offline ?? ["offline"]).map((w) => w.toLowerCase()));
  for (const w of online) {
    if (offline.has(w)) throw new FieldError("status", `"${w}" is both online and offline`);
  }
  return { path: s.path === undefined ? null : path("status.path", s.path), online, offline };
}

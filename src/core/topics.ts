/**
 * Topic templates: compiled once, matched per message. A template is a topic with named
 * levels, e.g. `{user_id}/{device_code}/feeds/{feed_key}`; its subscription filter
 * replaces each named level with the single-level wildcard `+` (MQTT 5 §4.7.1.3).
 */
import { FeedlineError } from "../errors.ts";

/** Names a template level can capture. */
export type SegmentName = "user_id" | "device_code" | "feed_key";
const SEGMENT_NAMES = new Set<string>(["user_id", "device_code", "feed_key"]);

/** Default templates (docs/topics-and-payloads.md). */
export const DEFAULT_TEMPLATES = {
  feed: "{user_id}/{device_code}/feeds/{feed_key}",
  feeds: "{user_id}/{device_code}/feeds",
  status: "{user_id}/{device_code}/status",
} as const;

/** The kind of message a template routes to. */
export type TopicKind = keyof typeof DEFAULT_TEMPLATES;

/** A compiled template. */
export interface CompiledTemplate {
  kind: TopicKind;
  template: string;
  /** Subscription filter with `+` for each named level. */
  filter: string;
  levels: number;
  /** For each level: the literal to compare, or null when captured. */
  literals: (string | null)[];
  /** Level index of each named segment, -1 when absent. */
  userIndex: number;
  deviceIndex: number;
  feedIndex: number;
}

/** Result of matching a topic. */
export interface TopicMatch {
  kind: TopicKind;
  userId: string;
  deviceCode: string;
  feedKey: string;
}

const REQUIRED: Record<TopicKind, SegmentName[]> = {
  feed: ["user_id", "device_code", "feed_key"],
  feeds: ["user_id", "device_code"],
  status: ["user_id", "device_code"],
};

/** Compiles one template; throws CONFIG_INVALID naming `option` when it is malformed. */
export function compileTemplate(
  kind: TopicKind,
  template: string,
  option: string,
): CompiledTemplate {
  const levels = template.split("/");
  const literals: (string | null)[] = [];
  const index: Record<SegmentName, number> = { user_id: -1, device_code: -1, feed_key: -1 };
  levels.forEach((level, i) => {
    const named = /^\{([a-z_]+)\}$/.exec(level);
    if (named) {
      const name = named[1];
      if (!SEGMENT_NAMES.has(name)) {
        throw new FeedlineError(
          "CONFIG_INVALID",
          `${option}: unknown segment {${name}} in "${template}"; use {user_id}, {device_code} or {feed_key}`,
        );
      }
      if (index[name as SegmentName] !== -1) {
        throw new FeedlineError(
          "CONFIG_INVALID",
          `${option}: {${name}} appears twice in "${template}"`,
        );
      }
      index[name as SegmentName] = i;
      literals.push(null);
    } else if (level.includes("+") || level.includes("#") || level.includes("{") || level === "") {
      throw new FeedlineError(
        "CONFIG_INVALID",
        `${option}: level "${level}" of "${template}" must be a plain word or a {segment}`,
      );
    } else {
      literals.push(level);
    }
  });
  for (const name of REQUIRED[kind]) {
    if (index[name] === -1) {
      throw new FeedlineError("CONFIG_INVALID", `${option}: "${template}" needs a {${name}} level`);
    }
  }
  if (kind !== "feed" && index.feed_key !== -1) {
    throw new FeedlineError(
      "CONFIG_INVALID",
      `${option}: "${template}" must not contain {feed_key}`,
    );
  }
  return {
    kind,
    template,
    filter: literals.map((l) => l ?? "+").join("/"),
    levels: levels.length,
    literals,
    userIndex: index.user_id,
    deviceIndex: index.device_code,
    feedIndex: index.feed_key,
  };
}

/** The compiled set of templates a process routes by. */
export interface TopicRouter {
  templates: CompiledTemplate[];
  /** Subscription filters, one per template. */
  filters: string[];
  match(topic: string): TopicMatch | null;
}

/** Compiles the three templates into a router. */
export function compileTopics(
  templates: { feed: string; feeds: string; status: string } = DEFAULT_TEMPLATES,
): TopicRouter {
  const compiled = [
    compileTemplate("feed", templates.feed, "--feed-topic"),
    compileTemplate("feeds", templates.feeds, "--feeds-topic"),
    compileTemplate("status", templates.status, "--status-topic"),
  ];
  for (let i = 0; i < compiled.length; i++) {
    for (let j = i + 1; j < compiled.length; j++) {
      if (overlap(compiled[i], compiled[j])) {
        throw new FeedlineError(
          "CONFIG_INVALID",
          `topic templates "${compiled[i].template}" and "${
            compiled[j].template
          }" match the same topics`,
        );
      }
    }
  }
  return {
    templates: compiled,
    filters: compiled.map((t) => t.filter),
    match: (topic) => matchTopic(compiled, topic),
  };
}

/** Can one topic match both templates? Then routing would depend on their order. */
function overlap(a: CompiledTemplate, b: CompiledTemplate): boolean {
  if (a.levels !== b.levels) return false;
  return a.literals.every((l, i) => l === null || b.literals[i] === null || l === b.literals[i]);
}

function matchTopic(templates: CompiledTemplate[], topic: string): TopicMatch | null {
  const levels = topic.split("/");
  outer: for (const t of templates) {
    if (levels.length !== t.levels) continue;
    for (let i = 0; i < t.levels; i++) {
      const literal = t.literals[i];
      if (literal !== null) {
        if (levels[i] !== literal) continue outer;
      } else if (levels[i] === "") {
        continue outer;
      }
    }
    return {
      kind: t.kind,
      userId: levels[t.userIndex],
      deviceCode: levels[t.deviceIndex],
      feedKey: t.feedIndex === -1 ? "" : levels[t.feedIndex],
    };
  }
  return null;
}

/** Builds a concrete topic from a template (used by `simulate` and tests). */
export function formatTopic(
  template: string,
  values: Partial<Record<SegmentName, string>>,
): string {
  return template.replace(/\{([a-z_]+)\}/g, (_, name: string) => {
    // Own keys only: `{constructor}` must not find Object.prototype's.
    const value = Object.hasOwn(values, name) ? values[name as SegmentName] : undefined;
    if (value === undefined) throw new Error(`formatTopic: no value for {${name}}`);
    return value;
  });
}

/**
 * Checks an errors topic template (or, with `flag`, another per-user topic serve
 * publishes on, such as `--alerts-topic`): `off` disables it; otherwise it must contain
 * `{user_id}`, no wildcard, and must not match what serve subscribes to (feedline would
 * otherwise reject its own feedback, forever).
 */
export function parseErrorsTopic(
  template: string,
  router: TopicRouter,
  flag = "--errors-topic",
): string | null {
  if (template === "off") return null;
  const fail = (why: string) =>
    new FeedlineError("CONFIG_INVALID", `${flag} ${why} (got "${template}")`);
  if (!template.includes("{user_id}")) throw fail(`must contain {user_id}, or be off`);
  if (/[+#]/.test(template) || template.startsWith("$")) {
    throw fail("must be a topic without + # and not start with $");
  }
  const sample = template.replaceAll("{user_id}", "00000000-0000-4000-8000-000000000000");
  if (router.match(sample)) {
    throw fail("matches one of the feed or status topic templates; feedback would loop");
  }
  return template;
}

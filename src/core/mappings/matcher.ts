/**
 * The topic matcher of mapping rules: which rule a topic belongs to, in O(levels) per
 * message whatever the number of rules (docs/topics-and-payloads.md, "Mappings").
 *
 * The rules' topics (literal levels and wildcard levels, each matching one non-empty
 * level) are built into a trie, and the trie is made deterministic at start: a node's
 * literal child also holds what its wildcard child continues with, so matching takes,
 * at each level, the literal child if there is one and else the wildcard child, and never
 * backtracks. A topic is one `Map` lookup per level, with 1 rule or 1000.
 *
 * Two rules that match one topic would make the outcome depend on their order, and a
 * broker may deliver such a message once per matching subscription (MQTT 5 §3.3.4): the
 * determinization finds every such pair, and it is refused at start with a topic both
 * match, as overlapping topic templates are (src/core/topics.ts).
 */
import { FeedlineError } from "../../errors.ts";

/** A rule's topic: per level, a literal, or null for a wildcard. */
export type TopicShape = readonly (string | null)[];

interface TrieNode {
  id: number;
  literals: Map<string, TrieNode>;
  wild: TrieNode | null;
  /** Index of the rule whose topic ends here, or -1. */
  rule: number;
}

interface State {
  literals: Map<string, State> | null;
  wild: State | null;
  rule: number;
}

/** States beyond this are refused at start: rules that would need them are pathological. */
const MAX_STATES = 200_000;

/** A compiled matcher: the index of the rule `topic` belongs to, or -1. */
export interface TopicMatcher {
  /** `levels` is the topic split at `/`. */
  match(levels: readonly string[]): number;
  /** States of the deterministic trie (for the benchmark and tests). */
  readonly states: number;
}

/**
 * Compiles the topics of `rules` (named in errors by `names`); throws CONFIG_INVALID,
 * naming both rules and a topic they share, when two overlap.
 */
export function compileMatcher(
  shapes: readonly TopicShape[],
  names: readonly string[],
  source = "mappings",
): TopicMatcher {
  let ids = 0;
  const node = (): TrieNode => ({ id: ids++, literals: new Map(), wild: null, rule: -1 });
  const root = node();
  shapes.forEach((shape, r) => {
    let n = root;
    for (const level of shape) {
      if (level === null) n = n.wild ??= node();
      else {
        let next = n.literals.get(level);
        if (!next) n.literals.set(level, next = node());
        n = next;
      }
    }
    if (n.rule !== -1) throw overlapError(source, names[n.rule], names[r], shape);
    n.rule = r;
  });

  const memo = new Map<string, State>();
  const determinize = (set: TrieNode[], path: string[]): State => {
    const key = set.map((n) => n.id).sort((a, b) => a - b).join(",");
    const known = memo.get(key);
    if (known) return known;
    if (memo.size >= MAX_STATES) {
      throw new FeedlineError(
        "CONFIG_INVALID",
        `${source}: the rules' topics need more than ${MAX_STATES} matcher states; use fewer ` +
          "wildcard levels in front of literal ones",
      );
    }
    const state: State = { literals: null, wild: null, rule: -1 };
    memo.set(key, state);
    for (const n of set) {
      if (n.rule === -1) continue;
      if (state.rule !== -1) throw overlapError(source, names[state.rule], names[n.rule], path);
      state.rule = n.rule;
    }
    const wilds = set.flatMap((n) => (n.wild ? [n.wild] : []));
    const keys = new Set<string>();
    for (const n of set) for (const k of n.literals.keys()) keys.add(k);
    if (keys.size > 0) {
      state.literals = new Map();
      for (const k of keys) {
        const next = set.flatMap((n) => {
          const child = n.literals.get(k);
          return child ? [child] : [];
        });
        state.literals.set(k, determinize([...next, ...wilds], [...path, k]));
      }
    }
    if (wilds.length > 0) state.wild = determinize(wilds, [...path, "x"]);
    return state;
  };
  const start = determinize([root], []);

  return {
    states: memo.size,
    match(levels) {
      let state: State | null = start;
      for (let i = 0; i < levels.length && state !== null; i++) {
        const level = levels[i];
        const literal: State | undefined = state.literals?.get(level);
        // A wildcard level never matches an empty one (as in src/core/topics.ts).
        state = literal ?? (level === "" ? null : state.wild);
      }
      return state === null ? -1 : state.rule;
    },
  };
}

function overlapError(
  source: string,
  a: string,
  b: string,
  path: readonly (string | null)[],
): FeedlineError {
  const topic = path.map((l) => l ?? "x").join("/");
  return new FeedlineError(
    "CONFIG_INVALID",
    `${source}: rules "${a}" and "${b}" both match topics like "${topic}"; make one of them ` +
      "more specific (a literal level where the other has a {name})",
  );
}

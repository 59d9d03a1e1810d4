/**
 * Paths into a decoded payload (JSON or CBOR), as mapping rules name them
 * (docs/topics-and-payloads.md, "Mappings"): `ENERGY.Power`, `aenergy.by_minute.0` or
 * `aenergy.by_minute[0]` (arrays by index), `$` for the payload itself; in patterns
 * (`ignore`, `text`) a `*` level matches any one key.
 *
 * Reading is by own fields only: a payload is data, so `constructor` or `__proto__` in a
 * path finds a key of that name or nothing, never a property of Object.prototype. Every
 * walk is iterative and bounded, whatever the payload.
 */

/** A parsed path: its levels, outermost first; `[]` is the payload itself. */
export type Path = readonly string[];

/** The payload itself. */
export const ROOT_PATH = "$";

/**
 * Parses a path; null when it is malformed (an empty level, an unclosed `[`). `$` and
 * `$.a.b` are the root and `a.b`.
 */
export function parsePath(text: string): Path | null {
  let rest = text.trim();
  if (rest === ROOT_PATH) return [];
  if (rest.startsWith("$.")) rest = rest.slice(2);
  if (rest === "") return null;
  const out: string[] = [];
  for (const part of rest.split(".")) {
    // `a[0][1]` is `a.0.1`.
    const m = /^([^[\]]*)((?:\[\d+\])*)$/.exec(part);
    if (!m) return null;
    if (m[1] !== "") out.push(m[1]);
    else if (m[2] === "") return null;
    for (const index of m[2].matchAll(/\[(\d+)\]/g)) out.push(index[1]);
  }
  return out;
}

/** A path as one name: its levels joined with dots (`ENERGY.Power`). */
export function pathName(path: Path): string {
  return path.join(".");
}

/** The value at `path` in `root`, or undefined when any level is missing. */
export function valueAt(root: unknown, path: Path): unknown {
  let node = root;
  for (const key of path) {
    if (node === null || typeof node !== "object") return undefined;
    if (Array.isArray(node)) {
      if (!/^\d+$/.test(key)) return undefined;
      node = node[Number(key)];
    } else if (node instanceof Uint8Array) {
      return undefined; // CBOR bytes are a value, not a container
    } else {
      node = Object.hasOwn(node, key) ? (node as Record<string, unknown>)[key] : undefined;
    }
  }
  return node;
}

/**
 * A set of path patterns (`ignore`, `text`): each a path whose `*` levels match any key.
 * Bucketed by length, so a walk compares a node's path only with patterns as long as it.
 */
export class PathPatterns {
  readonly #byLength = new Map<number, Path[]>();

  constructor(patterns: readonly Path[]) {
    for (const p of patterns) {
      const list = this.#byLength.get(p.length);
      if (list) list.push(p);
      else this.#byLength.set(p.length, [p]);
    }
  }

  get size(): number {
    return this.#byLength.size;
  }

  /** Does one of the patterns match `path` exactly? */
  matches(path: Path): boolean {
    const list = this.#byLength.get(path.length);
    if (!list) return false;
    outer: for (const p of list) {
      for (let i = 0; i < p.length; i++) {
        if (p[i] !== "*" && p[i] !== path[i]) continue outer;
      }
      return true;
    }
    return false;
  }
}

/** How `walkLeaves` goes. */
export interface LeafWalk {
  /** Subtrees at these paths are skipped. */
  ignore: PathPatterns;
  /** Text leaves at these paths are taken too (numbers and booleans always are). */
  text: PathPatterns;
  /** Stop after this many leaves: the walk answers "too_many". */
  maxLeaves: number;
}

/**
 * Calls `take` with every number, boolean (and bigint, from CBOR) leaf of `root` and
 * its path, plus the text leaves `walk.text` names; depth-first, in key order. Nulls,
 * other text, byte strings and empty containers are passed over. Answers "too_many"
 * (having stopped) when there are more than `walk.maxLeaves`.
 */
export function walkLeaves(
  root: unknown,
  walk: LeafWalk,
  take: (path: Path, value: unknown) => void,
): "ok" | "too_many" {
  let taken = 0;
  // Each entry: a node and its path. Children are pushed in reverse so they come out in order.
  const stack: [unknown, string[]][] = [[root, []]];
  while (stack.length > 0) {
    const [node, path] = stack.pop()!;
    if (path.length > 0 && walk.ignore.matches(path)) continue;
    const t = typeof node;
    if (
      t === "number" || t === "boolean" || t === "bigint" ||
      (t === "string" && walk.text.matches(path))
    ) {
      if (++taken > walk.maxLeaves) return "too_many";
      take(path, node);
      continue;
    }
    if (node === null || t !== "object" || node instanceof Uint8Array) continue;
    if (Array.isArray(node)) {
      for (let i = node.length - 1; i >= 0; i--) stack.push([node[i], [...path, String(i)]]);
    } else {
      const keys = Object.keys(node as Record<string, unknown>);
      for (let i = keys.length - 1; i >= 0; i--) {
        stack.push([(node as Record<string, unknown>)[keys[i]], [...path, keys[i]]]);
      }
    }
    // A payload of many empty containers pushes nothing per leaf: bound the nodes too.
    if (stack.length > walk.maxLeaves * 64) return "too_many";
  }
  return "ok";
}

/**
 * Name templates of mapping rules: `{device}.{path}`, `{site}`, `zigbee2mqtt`. Compiled
 * once into parts; filled per message from the topic's levels (and, for feed keys, the
 * reading's path), without a regular expression on the message path.
 */

/** A template, compiled: literal text, a topic level by index, or the reading's path. */
export type TemplatePart = string | { level: number } | { path: true };

/**
 * Compiles `text`; `levelIndex` gives the topic level of a `{name}`. Answers the parts,
 * or the name of the first placeholder it does not know (`{path}` only when `withPath`).
 */
export function compileTemplate(
  text: string,
  levelIndex: ReadonlyMap<string, number>,
  withPath: boolean,
): { ok: true; parts: TemplatePart[] } | { ok: false; unknown: string } {
  const parts: TemplatePart[] = [];
  let last = 0;
  for (const m of text.matchAll(/\{([^{}]*)\}/g)) {
    if (m.index > last) parts.push(text.slice(last, m.index));
    const name = m[1];
    if (name === "path" && withPath) parts.push({ path: true });
    else if (levelIndex.has(name)) parts.push({ level: levelIndex.get(name)! });
    else return { ok: false, unknown: name };
    last = m.index + m[0].length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return { ok: true, parts };
}

/** Does the template use `{path}`? */
export function usesPath(parts: readonly TemplatePart[]): boolean {
  return parts.some((p) => typeof p === "object" && "path" in p);
}

/** The template's text for these topic levels (and path). */
export function fillTemplate(
  parts: readonly TemplatePart[],
  levels: readonly string[],
  path = "",
): string {
  if (parts.length === 1 && typeof parts[0] === "object" && "level" in parts[0]) {
    return levels[parts[0].level];
  }
  let out = "";
  for (const p of parts) {
    out += typeof p === "string" ? p : "level" in p ? levels[p.level] : path;
  }
  return out;
}

/** The template's text when it has no placeholder, else null. */
export function literalOf(parts: readonly TemplatePart[]): string | null {
  if (parts.length === 0) return "";
  return parts.length === 1 && typeof parts[0] === "string" ? parts[0] : null;
}

/**
 * MQTT topic filters (`+` one level, `#` this level and all below), compiled once and
 * matched per message, with the rules of MQTT 5 §4.7: `#` only as the last level, `+`
 * and `#` only as a whole level, and wildcards at the first level do not match topics
 * that start with `$` (§4.7.2).
 */
import { FeedlineError } from "../errors.ts";

/** A compiled filter. */
export type TopicMatcher = (topic: string) => boolean;

/**
 * Compiles a filter; throws CONFIG_INVALID naming `option` when it is malformed.
 *
 * @example
 * ```ts
 * const m = compileTopicFilter("+/dev1/feeds/#", "--topic");
 * m("u/dev1/feeds/temp"); // true
 * ```
 */
export function compileTopicFilter(filter: string, option: string): TopicMatcher {
  if (filter === "") throw new FeedlineError("CONFIG_INVALID", `${option} must not be empty`);
  const levels = filter.split("/");
  levels.forEach((level, i) => {
    if (level === "#" && i !== levels.length - 1) {
      throw new FeedlineError("CONFIG_INVALID", `${option}: "#" must be the last level`);
    }
    if ((level.includes("#") || level.includes("+")) && level.length > 1) {
      throw new FeedlineError(
        "CONFIG_INVALID",
        `${option}: "+" and "#" must stand alone in a level (got "${level}")`,
      );
    }
  });
  const multi = levels[levels.length - 1] === "#";
  const fixed = multi ? levels.slice(0, -1) : levels;
  const wildFirst = levels[0] === "+" || levels[0] === "#";
  return (topic: string) => {
    if (wildFirst && topic.startsWith("$")) return false;
    const parts = topic.split("/");
    // "a/#" also matches "a" itself (§4.7.1.2).
    if (multi ? parts.length < fixed.length : parts.length !== fixed.length) return false;
    for (let i = 0; i < fixed.length; i++) {
      if (fixed[i] !== "+" && fixed[i] !== parts[i]) return false;
    }
    return true;
  };
}

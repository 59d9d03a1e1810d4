/**
 * Hostile input, generated (issue 22): the rule matcher agrees with the plain reading of
 * MQTT topic filters on any rules and topics (test/mappings_property_test.ts has the
 * decoders and the processor). Seeded (FEEDLINE_PROPERTY_SEED); fast-check prints the
 * counterexample on failure.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { FeedlineError } from "../../errors.ts";
import { compileMatcher, type TopicShape } from "./matcher.ts";

const SEED = Number(Deno.env.get("FEEDLINE_PROPERTY_SEED") || 1010);

/** A level of a rule or topic, from a small alphabet so that they meet often. */
const word = fc.constantFrom("a", "b", "c", "tele", "x");

/** The plain reading: each literal level equal, each wildcard level any non-empty one. */
function matchesPlainly(shape: TopicShape, levels: readonly string[]): boolean {
  return shape.length === levels.length &&
    shape.every((l, i) => l === null ? levels[i] !== "" : l === levels[i]);
}

Deno.test("property: the matcher finds exactly the rule whose filter matches, or refuses overlapping rules", () => {
  const shape = fc.array(fc.option(word, { freq: 3 }), { minLength: 1, maxLength: 5 });
  fc.assert(
    fc.property(
      fc.array(shape, { minLength: 1, maxLength: 12 }),
      fc.array(fc.array(fc.oneof(word, fc.constant("")), { minLength: 1, maxLength: 5 }), {
        maxLength: 30,
      }),
      (shapes, topics) => {
        let matcher;
        try {
          matcher = compileMatcher(shapes, shapes.map((_, i) => `r${i}`));
        } catch (error) {
          assert.ok(error instanceof FeedlineError, String(error));
          // Refused: some topic must match two of the rules.
          const overlap = shapes.some((a, i) =>
            shapes.some((b, j) =>
              j > i && a.length === b.length &&
              a.every((l, k) => l === null || b[k] === null || l === b[k])
            )
          );
          assert.ok(overlap, `refused without an overlap: ${error}`);
          return;
        }
        for (const levels of topics) {
          const expected = shapes.findIndex((s) => matchesPlainly(s, levels));
          assert.equal(matcher.match(levels), expected, levels.join("/"));
        }
      },
    ),
    { seed: SEED, numRuns: 2000 },
  );
});

import assert from "node:assert/strict";
import { FeedlineError } from "../errors.ts";
import { compileTopicFilter } from "./topic_filter.ts";

Deno.test("compileTopicFilter() matches + as one level and # as any rest, parent included", () => {
  const plus = compileTopicFilter("+/dev1/feeds/+", "--topic");
  assert.equal(plus("u/dev1/feeds/temp"), true);
  assert.equal(plus("u/dev2/feeds/temp"), false);
  assert.equal(plus("u/dev1/feeds"), false);
  const hash = compileTopicFilter("u/dev1/#", "--topic");
  assert.equal(hash("u/dev1/feeds/temp"), true);
  assert.equal(hash("u/dev1"), true);
  assert.equal(hash("u/dev2/feeds"), false);
  assert.equal(compileTopicFilter("#", "--topic")("anything/at/all"), true);
});

Deno.test("compileTopicFilter() does not let a leading wildcard match $ topics", () => {
  assert.equal(compileTopicFilter("#", "--topic")("$SYS/broker/uptime"), false);
  assert.equal(compileTopicFilter("+/broker/#", "--topic")("$SYS/broker/uptime"), false);
  assert.equal(compileTopicFilter("$SYS/#", "--topic")("$SYS/broker/uptime"), true);
});

Deno.test("compileTopicFilter() rejects a malformed filter naming the option", () => {
  for (const bad of ["a/#/b", "a/b+", "a#", ""]) {
    assert.throws(
      () => compileTopicFilter(bad, "--topic"),
      (e: unknown) =>
        e instanceof FeedlineError && e.code === "CONFIG_INVALID" && e.message.includes("--topic"),
      bad,
    );
  }
});

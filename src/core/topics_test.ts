import assert from "node:assert/strict";
import { FeedlineError } from "../errors.ts";
import { compileTemplate, compileTopics, formatTopic } from "./topics.ts";

const U = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";

Deno.test("compileTopics() derives one subscription filter per template", () => {
  assert.deepEqual(compileTopics().filters, ["+/+/feeds/+", "+/+/feeds", "+/+/status"]);
});

Deno.test("match() routes each default topic shape to its kind and segments", () => {
  const router = compileTopics();
  const cases: [string, unknown][] = [
    [`${U}/dev1/feeds/temp`, { kind: "feed", userId: U, deviceCode: "dev1", feedKey: "temp" }],
    [`${U}/dev1/feeds`, { kind: "feeds", userId: U, deviceCode: "dev1", feedKey: "" }],
    [`${U}/dev1/status`, { kind: "status", userId: U, deviceCode: "dev1", feedKey: "" }],
    [`${U}/dev1/feeds/temp/extra`, null],
    [`${U}/dev1`, null],
    [`${U}/dev1/other/temp`, null],
    [`${U}//feeds/temp`, null],
    [`${U}/dev1/feeds/`, null],
    ["", null],
  ];
  for (const [topic, expected] of cases) assert.deepEqual(router.match(topic), expected, topic);
});

Deno.test("templates with a prefix and reordered segments match", () => {
  const router = compileTopics({
    feed: "iot/{device_code}/{user_id}/v/{feed_key}",
    feeds: "iot/{device_code}/{user_id}/v",
    status: "iot/{device_code}/{user_id}/s",
  });
  assert.deepEqual(router.match(`iot/d9/${U}/v/hum`), {
    kind: "feed",
    userId: U,
    deviceCode: "d9",
    feedKey: "hum",
  });
  assert.equal(router.filters[0], "iot/+/+/v/+");
});

Deno.test("compileTemplate() names the option and the problem for bad templates", () => {
  const bad: [string, RegExp][] = [
    ["{user_id}/{device_code}/feeds", /needs a \{feed_key\}/],
    ["{user_id}/{nope}/feeds/{feed_key}", /unknown segment \{nope\}/],
    ["{user_id}/+/feeds/{feed_key}", /must be a plain word/],
    ["{user_id}/{user_id}/{device_code}/{feed_key}", /appears twice/],
    ["{user_id}//{device_code}/{feed_key}", /must be a plain word/],
  ];
  for (const [template, message] of bad) {
    assert.throws(() => compileTemplate("feed", template, "--feed-topic"), (e: unknown) => {
      assert.ok(e instanceof FeedlineError);
      assert.equal(e.code, "CONFIG_INVALID");
      assert.match(e.message, /^--feed-topic: /);
      assert.match(e.message, message);
      return true;
    });
  }
});

Deno.test("compileTopics() refuses two templates that match the same topics", () => {
  assert.throws(
    () =>
      compileTopics({
        feed: "a/{user_id}/{device_code}/{feed_key}",
        feeds: "a/{user_id}/{device_code}/x",
        status: "a/{user_id}/{device_code}/y",
      }),
    /match the same topics/,
  );
});

Deno.test("formatTopic() fills a template", () => {
  assert.equal(
    formatTopic("{user_id}/{device_code}/feeds/{feed_key}", {
      user_id: U,
      device_code: "d",
      feed_key: "t",
    }),
    `${U}/d/feeds/t`,
  );
});

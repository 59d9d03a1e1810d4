import assert from "node:assert/strict";
import { ErrorFeedback } from "./feedback.ts";
import { parseErrorsTopic } from "../core/topics.ts";
import { Counter } from "../prometheus.ts";
import type { RejectDetail } from "../ingest/processor.ts";
import { compileTopics, DEFAULT_TEMPLATES } from "../core/topics.ts";

const router = compileTopics(DEFAULT_TEMPLATES);
const USER = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";

function reject(topic: string, userId: string | null = USER): RejectDetail {
  return { topic, reason: "bad_payload", detail: "x", userId, receivedAtUs: 1e15 };
}

Deno.test("parseErrorsTopic() refuses templates that serve would subscribe to itself", () => {
  assert.equal(parseErrorsTopic("{user_id}/errors", router), "{user_id}/errors");
  assert.equal(parseErrorsTopic("off", router), null);
  assert.throws(() => parseErrorsTopic("{user_id}/errors/feeds/x", router), /feedback would loop/);
  assert.throws(() => parseErrorsTopic("errors", router), /must contain \{user_id\}/);
  assert.throws(() => parseErrorsTopic("{user_id}/#", router), /without \+ #/);
  // The alerts topic is checked alike, and its error names its own flag.
  assert.throws(
    () => parseErrorsTopic("alerts", router, "--alerts-topic"),
    (e: Error) => e.message.startsWith("--alerts-topic must contain {user_id}"),
  );
});

Deno.test("ErrorFeedback limits each user separately and reports what it held back", () => {
  let now = 0;
  const sent: [string, Record<string, unknown>][] = [];
  const counter = new Counter("c", "c");
  const feedback = new ErrorFeedback({
    template: "{user_id}/errors",
    perUserPerMinute: 2,
    router,
    counter,
    now: () => now,
    publish: (topic, payload) => (sent.push([topic, JSON.parse(payload)]), true),
  });
  const other = "0f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
  feedback.report([1, 2, 3, 4].map(() => reject(`${USER}/d/feeds/t`)));
  feedback.report([reject(`${other}/d/feeds/t`, null)]); // user id found from the topic
  feedback.report([reject("no/match", null)]);
  assert.deepEqual(sent.map(([t]) => t), [`${USER}/errors`, `${USER}/errors`, `${other}/errors`]);
  assert.equal(counter.get({ outcome: "rate_limited" }), 2);
  assert.equal(counter.get({ outcome: "no_user" }), 1);
  now += 30_000; // half a minute: one token back
  feedback.report([reject(`${USER}/d/feeds/t`)]);
  assert.equal(sent.length, 4);
  assert.equal(sent[3][1].suppressed, 2);
  assert.equal(counter.get({ outcome: "published" }), 4);
});

Deno.test("ErrorFeedback sends a user's feedback to one topic whatever the case of the id", () => {
  const sent: string[] = [];
  const feedback = new ErrorFeedback({
    template: "{user_id}/errors",
    perUserPerMinute: 10,
    router,
    counter: new Counter("c", "c"),
    publish: (topic) => (sent.push(topic), true),
  });
  const upper = USER.toUpperCase();
  feedback.report([reject(`${upper}/d/feeds/t`, null), reject(`${upper}/d/feeds/t`, USER)]);
  feedback.report([reject(`not-a-uuid/d/feeds/t`, null)]);
  assert.deepEqual(sent, [`${USER}/errors`, `${USER}/errors`]);
});

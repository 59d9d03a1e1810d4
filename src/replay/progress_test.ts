import assert from "node:assert/strict";
import { describeProgress, formatDuration, Progress } from "./progress.ts";

Deno.test("describeProgress() gives count, rate, share done and ETA from the share", () => {
  const { fraction, text } = describeProgress(50_000, 10_000, 250, 1000);
  assert.equal(fraction, 0.25);
  // 10 s for a quarter: 30 s to go.
  assert.equal(text, "50,000 messages, 5,000/s, 25%, ETA 0:30");
});

Deno.test("describeProgress() leaves out share and ETA when the total is unknown (stdin)", () => {
  assert.equal(describeProgress(10, 1000, 99, null).text, "10 messages, 10/s");
});

Deno.test("formatDuration() writes m:ss, and h:mm:ss past an hour", () => {
  assert.equal(formatDuration(5), "0:05");
  assert.equal(formatDuration(3725), "1:02:05");
});

Deno.test("Progress in lines mode writes plain lines; bar mode redraws in place and clears", () => {
  let clock = 1000; // ms, moved by the test
  const now = () => clock;
  const lines: string[] = [];
  const plain = new Progress({
    mode: "lines",
    total: 100,
    write: (t) => lines.push(t),
    lineIntervalMs: 1000,
    now,
  });
  clock += 999;
  plain.update(40, 8);
  assert.deepEqual(lines, [], "not before the line interval");
  clock += 1;
  plain.update(50, 10);
  assert.deepEqual(lines, ["replay: 10 messages, 10/s, 50%, ETA 0:01\n"]);

  const drawn: string[] = [];
  const bar = new Progress({ mode: "bar", total: 100, write: (t) => drawn.push(t), now });
  clock += 200; // the bar's redraw interval
  bar.update(50, 10);
  bar.finish();
  assert.equal(drawn.length, 2);
  assert.ok(drawn[0].startsWith("\r\x1b[2K"), "redraws the line in place");
  assert.match(drawn[0], /\[█{12}░{12}\] 10 messages/);
  assert.equal(drawn[1], "\r\x1b[2K");
});

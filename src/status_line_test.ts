import assert from "node:assert/strict";
import { StatusLine } from "./status_line.ts";

Deno.test("StatusLine redraws one line in place on a terminal and clears or keeps it at the end", () => {
  let out = "";
  const line = new StatusLine({
    mode: "live",
    write: (t) => out += t,
    liveIntervalMs: 0,
    lineIntervalMs: 0,
  });
  line.show("1 message");
  line.show("2 messages");
  line.finish(true);
  assert.equal(out, "\r\x1b[2K1 message\r\x1b[2K2 messages\n");
});

Deno.test("StatusLine writes plain prefixed lines, no more often than its interval", () => {
  const out: string[] = [];
  const line = new StatusLine({
    mode: "lines",
    write: (t) => out.push(t),
    liveIntervalMs: 0,
    lineIntervalMs: 60_000,
    prefix: "replay: ",
  });
  line.show("too soon");
  line.show("forced", true);
  line.finish();
  assert.deepEqual(out, ["replay: forced\n"]);
});

Deno.test("StatusLine is silent when off", () => {
  let out = "";
  const line = new StatusLine({
    mode: "off",
    write: (t) => out += t,
    liveIntervalMs: 0,
    lineIntervalMs: 0,
  });
  line.show("x", true);
  line.finish(true);
  assert.equal(out, "");
});

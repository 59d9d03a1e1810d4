import assert from "node:assert/strict";
import { statusPageCharts } from "./status_page_charts.ts";

const { runs, shorten } = statusPageCharts();

Deno.test("a chart series is drawn in runs: a gap ends a line, a lone value is its own run", () => {
  assert.deepEqual(runs([1, null, 2, 3, null, null, 4]), [[0], [2, 3], [6]]);
  assert.deepEqual(runs([null, null]), []);
  assert.deepEqual(runs([5, 6, 7]), [[0, 1, 2]]);
});

Deno.test("a long reject detail is cut at a word, never inside one", () => {
  const text = "value 150 is above the feed's maximum 100 ".repeat(8).trim();
  const short = shorten(text);
  assert.ok(short.length <= 162 && short.endsWith(" …"), short);
  const kept = short.slice(0, -2);
  assert.ok(text.startsWith(kept) && text[kept.length] === " ", short);
  assert.equal(shorten("short detail"), "short detail");
});

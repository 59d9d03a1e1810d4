import assert from "node:assert/strict";
import { normalizeTables, OPTION_TABLES, renderReadme } from "../scripts/gen_docs.ts";

Deno.test("README option tables match the commands' option declarations", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  for (const name of Object.keys(OPTION_TABLES)) {
    assert.ok(readme.includes(`<!-- options:${name} -->`), `README has no table for ${name}`);
  }
  assert.equal(
    normalizeTables(readme),
    normalizeTables(renderReadme(readme)),
    "README.md is out of date: run `deno task docs`",
  );
});

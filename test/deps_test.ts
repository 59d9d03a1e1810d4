/**
 * Runtime and test dependencies kept apart (docs/operations.md, "Install"): deno.json's
 * "imports" (and deno.lock) hold only what feedline needs to run, so `deno task serve` on an
 * empty Deno cache fetches no test-only package; test/deno.jsonc, which `deno task test` and
 * `deno task check` pass with `--config`, repeats them and adds the test-only ones.
 */
import assert from "node:assert/strict";

/** Packages only the tests import. */
const TEST_ONLY = ["fast-check", "playwright-core"];

const ROOT = new URL("../", import.meta.url);

async function readJson(path: string): Promise<Record<string, unknown>> {
  const text = await Deno.readTextFile(new URL(path, ROOT));
  // test/deno.jsonc has whole-line comments only.
  return JSON.parse(text.split("\n").filter((l) => !l.trim().startsWith("//")).join("\n"));
}

Deno.test("deno.json and deno.lock name no test-only package", async () => {
  const imports = (await readJson("deno.json")).imports as Record<string, string>;
  assert.deepEqual(TEST_ONLY.filter((name) => name in imports), [], "test-only in deno.json");
  const lock = await Deno.readTextFile(new URL("deno.lock", ROOT));
  assert.deepEqual(TEST_ONLY.filter((name) => lock.includes(`"${name}@`)), [], "in deno.lock");
});

Deno.test("test/deno.jsonc is deno.json's imports plus the test-only packages", async () => {
  const runtime = (await readJson("deno.json")).imports as Record<string, string>;
  const test = (await readJson("test/deno.jsonc")).imports as Record<string, string>;
  const expected = { ...runtime };
  for (const name of TEST_ONLY) expected[name] = test[name];
  assert.deepEqual(test, expected, "add a runtime dependency to both files, same version");
  for (const name of TEST_ONLY) assert.match(test[name] ?? "", /^npm:.+@\d/, name);
});

Deno.test("deno task test and deno task check use test/deno.jsonc", async () => {
  const tasks = (await readJson("deno.json")).tasks as Record<string, string>;
  for (const name of ["test", "test:unit", "test:bench", "test:files"]) {
    assert.match(tasks[name], /--config test\/deno\.jsonc/, name);
  }
  assert.match(tasks.check, /deno check --config test\/deno\.jsonc .*test\//);
});

Deno.test("test/deno.jsonc formats and lints as deno.json does", async () => {
  // `deno fmt test/` reads test/deno.jsonc: with other settings it would rewrap every file.
  const root = await readJson("deno.json");
  const test = await readJson("test/deno.jsonc");
  assert.deepEqual(test.fmt, root.fmt);
  assert.deepEqual(test.lint, root.lint);
});

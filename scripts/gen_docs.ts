/**
 * Regenerates the option tables in README.md from the commands' option declarations,
 * between `<!-- options:NAME -->` and `<!-- /options:NAME -->` markers. Run with
 * `deno task docs`; test/readme_test.ts fails when the README is out of date.
 */
import { formatOptionsMarkdown, type OptionSpec } from "../src/cli/options.ts";
import { serveOptions } from "../src/cli/serve_options.ts";
import { migrateOptions } from "../commands/migrate.ts";
import { benchOptions } from "../bench/main.ts";
import { simulateOptions } from "../src/cli/simulate_options.ts";
import { replayOptions } from "../commands/replay.ts";
import { traceOptions } from "../commands/trace.ts";
import { rollupsOptions } from "../commands/rollups.ts";

/** The tables, by marker name. Commands add theirs here. */
export const OPTION_TABLES: Record<string, Record<string, OptionSpec>> = {
  serve: serveOptions,
  migrate: migrateOptions,
  bench: benchOptions,
  simulate: simulateOptions,
  replay: replayOptions,
  trace: traceOptions,
  rollups: rollupsOptions,
};

/** Table rows compared without the padding `deno fmt` adds. */
export function normalizeTables(markdown: string): string {
  return markdown.split("\n").filter((line) => line.trim() !== "").map((line) =>
    line.startsWith("|") ? line.replace(/\s*\|\s*/g, "|").replace(/-{3,}/g, "---") : line
  ).join("\n");
}

/** Returns `readme` with every marked table replaced by its generated content. */
export function renderReadme(readme: string): string {
  let out = readme;
  for (const [name, specs] of Object.entries(OPTION_TABLES)) {
    const start = `<!-- options:${name} -->`;
    const end = `<!-- /options:${name} -->`;
    const a = out.indexOf(start);
    const b = out.indexOf(end);
    if (a === -1 || b === -1) continue;
    out = `${out.slice(0, a + start.length)}\n\n${formatOptionsMarkdown(specs)}\n\n${out.slice(b)}`;
  }
  return out;
}

if (import.meta.main) {
  const path = new URL("../README.md", import.meta.url);
  const before = await Deno.readTextFile(path);
  const after = renderReadme(before);
  const changed = normalizeTables(after) !== normalizeTables(before);
  if (changed) {
    await Deno.writeTextFile(path, after);
    // deno fmt aligns Markdown tables; keep the file as `deno fmt --check` wants it.
    await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", path.pathname] }).output();
  }
  console.log(changed ? "README.md updated" : "README.md is up to date");
}

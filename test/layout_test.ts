/**
 * The layout of docs/architecture.md ("The wings"), checked: every relative import in
 * `src/` goes to a wing the importer may import, and no chain of imports between files
 * (of src/, commands/ and bench/) comes back to where it started.
 */
import assert from "node:assert/strict";

const SRC = new URL("../src/", import.meta.url);

/** Each wing and the wings it may import ("top" is the leaves directly in src/). */
const MAY_IMPORT: Record<string, string[]> = {
  top: [],
  core: ["top"],
  embedded: ["top"],
  db: ["embedded", "top"],
  cli: ["core", "top"],
  mqtt: ["core", "top"],
  capture: ["core", "top"],
  ingest: ["db", "core", "top"],
  sim: ["mqtt", "core", "top"],
  replay: ["ingest", "capture", "db", "core", "top"],
  ops: ["ingest", "mqtt", "db", "core", "top"],
};

const ROOT = new URL("../", import.meta.url);

async function sourceFiles(dir: URL, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory) {
      out.push(...await sourceFiles(new URL(`${entry.name}/`, dir), `${prefix}${entry.name}/`));
    } else if (entry.name.endsWith(".ts") && !entry.name.endsWith("_test.ts")) {
      out.push(`${prefix}${entry.name}`);
    }
  }
  return out;
}

function wingOf(path: string): string {
  return path.includes("/") ? path.slice(0, path.indexOf("/")) : "top";
}

/**
 * The relative imports of every file under `folders` (paths relative to `base`), each
 * to a path relative to `base`.
 */
async function importGraph(base: URL, folders: string[] = [""]): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>();
  for (const folder of folders) {
    for (const file of await sourceFiles(new URL(folder, base), folder)) {
      const text = await Deno.readTextFile(new URL(file, base));
      const targets: string[] = [];
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+\.ts)"/g)) {
        const url = new URL(m[1], new URL(file, base));
        targets.push(url.pathname.slice(base.pathname.length));
      }
      graph.set(file, targets);
    }
  }
  return graph;
}

/** Every chain of imports in `graph` that comes back to where it started. */
function cyclesOf(graph: Map<string, string[]>): string[] {
  const state = new Map<string, "open" | "done">();
  const cycles: string[] = [];
  const visit = (file: string, path: string[]) => {
    if (state.get(file) === "done") return;
    if (state.get(file) === "open") {
      cycles.push([...path.slice(path.indexOf(file)), file].join(" → "));
      return;
    }
    state.set(file, "open");
    for (const t of graph.get(file) ?? []) visit(t, [...path, file]);
    state.set(file, "done");
  };
  for (const file of graph.keys()) visit(file, []);
  return cycles;
}

Deno.test("every import in src/ goes to a wing the importer may import", async () => {
  const graph = await importGraph(SRC);
  const wrong: string[] = [];
  for (const [file, targets] of graph) {
    const from = wingOf(file);
    assert.ok(from in MAY_IMPORT, `src/${file}: wing "${from}" is not in docs/architecture.md`);
    for (const target of targets) {
      const to = wingOf(target);
      if (to !== from && !MAY_IMPORT[from].includes(to)) wrong.push(`src/${file} → src/${target}`);
    }
  }
  assert.deepEqual(wrong, [], "imports that go upward or sideways");
});

Deno.test("no import chain in src/, commands/ or bench/ comes back to its start", async () => {
  assert.deepEqual(cyclesOf(await importGraph(SRC)), [], "src/");
  // commands/ and bench/ import src/ too; a chain through them is a circle all the same.
  const all = await importGraph(ROOT, ["src/", "commands/", "bench/"]);
  assert.deepEqual(cyclesOf(all), [], "src/, commands/ and bench/");
});

Deno.test("src/ shows its wings: at most 12 files on top, at least 4 folders", async () => {
  const files: string[] = [];
  const folders: string[] = [];
  for await (const e of Deno.readDir(SRC)) (e.isDirectory ? folders : files).push(e.name);
  assert.ok(files.length <= 12, `src/ has ${files.length} files on top: ${files.join(", ")}`);
  assert.ok(folders.length >= 4, `src/ has ${folders.length} folders`);
  for (const folder of folders) assert.ok(folder in MAY_IMPORT, `src/${folder}/ is not documented`);
});

/** Most lines of a file in src/ (tests beside the code included): a room of one job. */
const MAX_SOURCE_LINES = 450;

/** The processor keeps only the ways a batch is written; the rest is in src/ingest/write/. */
const MAX_PROCESSOR_LINES = 250;

Deno.test(`no file in src/ is over ${MAX_SOURCE_LINES} lines`, async () => {
  const long: string[] = [];
  const walk = async (dir: URL, prefix: string) => {
    for await (const e of Deno.readDir(dir)) {
      if (e.isDirectory) await walk(new URL(`${e.name}/`, dir), `${prefix}${e.name}/`);
      else if (e.name.endsWith(".ts")) {
        const lines = (await Deno.readTextFile(new URL(e.name, dir))).split("\n").length - 1;
        if (lines > MAX_SOURCE_LINES) long.push(`src/${prefix}${e.name}: ${lines} lines`);
      }
    }
  };
  await walk(SRC, "");
  assert.deepEqual(long, []);
});

Deno.test("each command only parses and wires: at most 250 lines", async () => {
  const commands = new URL("../commands/", import.meta.url);
  for await (const e of Deno.readDir(commands)) {
    const lines = (await Deno.readTextFile(new URL(e.name, commands))).split("\n").length - 1;
    assert.ok(lines <= 250, `commands/${e.name} has ${lines} lines`);
  }
});

Deno.test(`src/ingest/processor.ts keeps to the ways a batch is written: at most ${MAX_PROCESSOR_LINES} lines`, async () => {
  const text = await Deno.readTextFile(new URL("ingest/processor.ts", SRC));
  const lines = text.split("\n").length - 1;
  assert.ok(lines <= MAX_PROCESSOR_LINES, `src/ingest/processor.ts has ${lines} lines`);
});

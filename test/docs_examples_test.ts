/**
 * Docs that run: the examples marked `<!-- doc-test -->` in the docs below are run as
 * written and their output is compared with the doc (test/support/doc_examples.ts says
 * how blocks are marked and compared), so a sample cannot drift from what the command
 * prints. Needs TEST_DATABASE_URL (a real PostgreSQL); each doc's databases are fresh.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { fileURLToPath } from "node:url";
import { compareOutput, type DocStep, parseDocSteps, runBlock } from "./support/doc_examples.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const SERVER = Deno.env.get("TEST_DATABASE_URL");
const DOCS = ["docs/replay.md", "docs/operations.md"];
// A doc's blocks together; a block that hangs is killed long before the suite's timeout.
const BLOCK_TIMEOUT_MS = 30_000;
const DOC_URL = /postgres:\/\/root@127\.0\.0\.1:5432\/(\w+)/g;

/** Replaces every key of `map` in `text` by its value. */
function substitute(text: string, map: Map<string, string>): string {
  let out = text;
  for (const [from, to] of map) out = out.replaceAll(from, to);
  return out;
}

/**
 * `deno` and `feedline` for the doc's commands: `deno task X` runs deno.json's task X of
 * this checkout (each is `deno run -A FILE ...`) in the doc's directory, without the
 * "Task" line on stderr; `feedline` is main.ts.
 */
async function writeBin(binDir: string): Promise<void> {
  const deno = Deno.execPath();
  const { tasks } = JSON.parse(await Deno.readTextFile(`${REPO}deno.json`)) as {
    tasks: Record<string, string>;
  };
  const cases = Object.entries(tasks).flatMap(([name, command]) => {
    const m = /^deno run -A (\S+)(.*)$/.exec(command);
    return m ? [`  ${name}) shift 2; exec "${deno}" run -A "${REPO}${m[1]}"${m[2]} "$@";;`] : [];
  });
  await Deno.writeTextFile(
    `${binDir}/deno`,
    `#!/bin/sh\nif [ "$1" = task ]; then\n  case "$2" in\n${cases.join("\n")}\n` +
      `  *) echo "doc-test: no such task: $2" >&2; exit 2;;\n  esac\nfi\nexec "${deno}" "$@"\n`,
  );
  await Deno.writeTextFile(
    `${binDir}/feedline`,
    `#!/bin/sh\nexec "${deno}" run -A "${REPO}main.ts" "$@"\n`,
  );
  await Deno.chmod(`${binDir}/deno`, 0o755);
  await Deno.chmod(`${binDir}/feedline`, 0o755);
}

async function runDoc(doc: string, steps: DocStep[]): Promise<void> {
  const text = await Deno.readTextFile(`${REPO}${doc}`);
  const dir = await Deno.makeTempDir({ prefix: "feedline-doc-test-" });
  const admin = postgres(SERVER!, { max: 1, onnotice: () => {} });
  // The doc's databases → fresh ones on the test server (and back, in the output).
  const toTest = new Map<string, string>();
  const fromTest = new Map<string, string>();
  const base = SERVER!.replace(/\/[^/]*$/, "");
  for (const m of new Set([...text.matchAll(DOC_URL)].map((m) => m[1]))) {
    const name = `feedline_doc_${crypto.randomUUID().slice(0, 8)}_${m}`;
    await admin.unsafe(`create database ${name}`);
    toTest.set(`postgres://root@127.0.0.1:5432/${m}`, `${base}/${name}`);
    fromTest.set(`${base}/${name}`, `postgres://root@127.0.0.1:5432/${m}`);
  }
  try {
    await Deno.mkdir(`${dir}/.bin`);
    await writeBin(`${dir}/.bin`);
    const env = {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: Deno.env.get("HOME") ?? dir,
      NO_COLOR: "1",
      ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
    };
    const failures: string[] = [];
    for (const step of steps) {
      const where = `${doc}:${step.line}`;
      if (step.kind === "file") {
        await Deno.writeTextFile(`${dir}/${step.name}`, step.text);
        continue;
      }
      const run = await runBlock({
        dir,
        binDir: `${dir}/.bin`,
        envFile: `${dir}/.env`,
        setup: step.setup.map((l) => substitute(l, toTest)),
        commands: step.commands.map((c) => substitute(c.command, toTest)),
        env,
        timeoutMs: BLOCK_TIMEOUT_MS,
      });
      step.commands.forEach((c, i) => {
        const got = (run.outputs[i] ?? ["<not run: the block was killed>"])
          .map((l) => substitute(l, fromTest));
        const diff = compareOutput(c.expected, got);
        if (diff !== null) failures.push(`${where}: $ ${c.command}\n${diff}`);
      });
    }
    if (failures.length > 0) assert.fail(failures.join("\n\n"));
  } finally {
    await Deno.remove(dir, { recursive: true });
    for (const name of fromTest.keys()) {
      await admin.unsafe(`drop database if exists ${name.replace(/.*\//, "")} with (force)`);
    }
    await admin.end();
  }
}

for (const doc of DOCS) {
  Deno.test({
    name: `the marked examples of ${doc} print what the doc shows`,
    ignore: !SERVER,
    fn: async () => {
      const steps = parseDocSteps(await Deno.readTextFile(`${REPO}${doc}`));
      assert.ok(steps.some((s) => s.kind === "console"), `${doc} has no doc-test block`);
      await runDoc(doc, steps);
    },
  });
}

/**
 * Docs that run: the examples marked `<!-- doc-test -->` in the docs below are run as
 * written and their output is compared with the doc (test/support/doc_examples.ts says
 * how blocks are marked and compared), so a sample cannot drift from what the command
 * prints. Needs TEST_DATABASE_URL (a real PostgreSQL); each doc's databases are fresh.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { fileURLToPath } from "node:url";
import { waitFor } from "./support/serve.ts";
import {
  canUnshareNetwork,
  compareOutput,
  type DocStep,
  parseDocSteps,
  runBlock,
} from "./support/doc_examples.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const SERVER = Deno.env.get("TEST_DATABASE_URL");
const DOCS = ["docs/replay.md", "docs/operations.md", "docs/scaling.md"];
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
  const dir = await Deno.makeTempDir({ prefix: "feedline-doc-test-" });
  const admin = postgres(SERVER!, { max: 1, onnotice: () => {} });
  // The doc's databases → fresh ones on the test server (and back, in the output).
  const toTest = new Map<string, string>();
  const fromTest = new Map<string, string>();
  const base = SERVER!.replace(/\/[^/]*$/, "");
  const run = steps.flatMap((s) =>
    s.kind === "console" ? [...s.setup, ...s.commands.map((c) => c.command)] : []
  ).join("\n");
  for (const m of new Set([...run.matchAll(DOC_URL)].map((m) => m[1]))) {
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
    const ownNetwork = await canUnshareNetwork();
    for (const step of steps) {
      const where = `${doc}:${step.line}`;
      if (step.kind === "file") {
        await Deno.writeTextFile(`${dir}/${step.name}`, step.text);
        continue;
      }
      if (step.ownNetwork && !ownNetwork) {
        console.warn(`${where}: skipped, no network namespace here (unshare -n)`);
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
        ownNetwork: step.ownNetwork,
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

Deno.test({
  name: `the marked examples of ${DOCS.join(", ")} print what the docs show`,
  ignore: !SERVER,
  fn: async () => {
    // The docs at once (each in its own folder and databases): the wait is the longest's.
    const results = await Promise.allSettled(DOCS.map(async (doc) => {
      const steps = parseDocSteps(await Deno.readTextFile(`${REPO}${doc}`));
      assert.ok(steps.some((s) => s.kind === "console"), `${doc} has no doc-test block`);
      await runDoc(doc, steps);
    }));
    const failed = results.flatMap((r) => r.status === "rejected" ? [String(r.reason)] : []);
    if (failed.length > 0) assert.fail(failed.join("\n\n"));
  },
});

Deno.test("doc-test blocks: markers, set-up, files, and how output is compared", () => {
  const md = [
    "<!-- doc-test: file a.txt -->",
    "",
    "```text",
    "x y",
    "```",
    "<!-- doc-test",
    "export A=1",
    "-->",
    "```console",
    "$ echo $A",
    "1",
    "$ true",
    "```",
  ].join("\n");
  assert.deepEqual(parseDocSteps(md), [
    { kind: "file", name: "a.txt", text: "x y\n", line: 1 },
    {
      kind: "console",
      setup: ["export A=1"],
      commands: [{ command: "echo $A", expected: ["1"] }, { command: "true", expected: [] }],
      line: 6,
    },
  ]);
  assert.equal(compareOutput(["a", "...", "d"], ["a", "b", "c", "d"]), null);
  assert.equal(compareOutput(["applied 001, … (x)"], ["applied 001, 002 (x)"]), null);
  assert.equal(compareOutput(["  elapsed  0.0 s"], ["  elapsed  9.9 s, 1 messages/s"]), null);
  assert.equal(compareOutput(["f (3.5 MB)"], ["f (3.9 MB)"]), null);
  assert.notEqual(compareOutput(["f (2.8 MB)"], ["f (3.5 MB)"]), null, "25% off is drift");
  assert.notEqual(compareOutput(["unknown_feed 4, unknown_device 1"], ["unknown_device 5"]), null);
  assert.notEqual(compareOutput(["a"], ["a", "b"]), null, "an extra line is drift");
});

Deno.test("a doc block that hangs is killed with its background jobs at the timeout", async () => {
  const dir = await Deno.makeTempDir({ prefix: "feedline-doc-test-" });
  try {
    const run = await runBlock({
      dir,
      binDir: dir,
      envFile: `${dir}/.env`,
      setup: [],
      commands: ["sleep 120 & echo $! > bg.pid", "echo before", "sleep 60"],
      env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
      timeoutMs: 500,
    });
    assert.deepEqual(run.outputs.slice(0, 2), [[""], ["before"]]);
    assert.notEqual(run.code, 0, "the block was killed, not run to its end");
    const pid = Number(await Deno.readTextFile(`${dir}/bg.pid`));
    // Killed at once; gone once reaped.
    await waitFor("the background job gone", () => !alive(pid), 5_000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z/.test(stat); // a zombie has ended
  } catch {
    return false;
  }
}

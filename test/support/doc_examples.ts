/**
 * Docs that run: the shell examples of README.md and docs/*.md marked for it are run,
 * and what they print is compared with the doc (test/docs_examples_test.ts).
 *
 * Marking, in the markdown (invisible when rendered):
 *
 * - `<!-- doc-test -->` before a ```console block (blank lines between are fine): each `$ ` line is a command, run
 *   by bash in the doc's working directory, and the lines up to the next `$ ` line are
 *   what it prints (stdout and stderr together). In the expected lines, `...` stands for
 *   any number of lines, `…` within a line any text, a size (`3.5 MB`) any within 25% of
 *   it, and the variable parts are compared loosely (`normalize`).
 *   Lines after the marker, up to `-->`, are hidden set-up commands run first:
 *   `<!-- doc-test` + newline + commands + `-->`.
 * - `<!-- doc-test: file NAME -->` right before any block: its text is written to NAME
 *   in the working directory before the blocks after it run.
 * - `<!-- doc-test: own-network` (set-up lines) `-->`: a console block run in a network
 *   namespace of its own (`unshare -n`, loopback only), where the doc's ports (1883) are
 *   free and its traffic meets no other test's; its set-up starts what it talks to.
 *
 * The blocks of one doc run in order and share a working directory and the exported
 * environment (`export` carries over from block to block). Every database URL
 * `postgres://root@127.0.0.1:5432/NAME` of the doc is mapped to a fresh database of
 * the test server and back in the output; `deno task X` and `feedline X` run this
 * checkout's main.ts. Each block runs in its own process group, killed when the block
 * ends or times out.
 */

/** A block of a doc to run, or a file to write. */
export type DocStep =
  | { kind: "file"; name: string; text: string; line: number }
  | {
    kind: "console";
    setup: string[];
    commands: DocCommand[];
    line: number;
    /** Run in a network namespace of its own: 127.0.0.1:1883 is free there. */
    ownNetwork?: boolean;
  };

/** One `$ ` line of a console block and what the doc says it prints. */
export interface DocCommand {
  command: string;
  expected: string[];
}

/** The marked blocks of a markdown text, in order. */
export function parseDocSteps(markdown: string): DocStep[] {
  const lines = markdown.split("\n");
  const steps: DocStep[] = [];
  for (let i = 0; i < lines.length; i++) {
    const start = /^<!-- doc-test(?::\s*(.*?))?\s*(-->)?$/.exec(lines[i]);
    if (!start) continue;
    const line = i + 1;
    const setup: string[] = [];
    if (!start[2]) {
      for (i++; i < lines.length && lines[i].trim() !== "-->"; i++) setup.push(lines[i]);
    }
    while (lines[i + 1]?.trim() === "") i++; // deno fmt puts a blank line after a comment
    const fence = /^```(\w*)$/.exec(lines[++i] ?? "");
    if (!fence) throw new Error(`line ${line}: a doc-test marker must be followed by a block`);
    const body: string[] = [];
    for (i++; i < lines.length && lines[i] !== "```"; i++) body.push(lines[i]);
    const file = /^file\s+(\S+)$/.exec(start[1] ?? "");
    if (file) {
      steps.push({ kind: "file", name: file[1], text: body.join("\n") + "\n", line });
      continue;
    }
    if (fence[1] !== "console") throw new Error(`line ${line}: doc-test runs console blocks`);
    const ownNetwork = start[1] === "own-network";
    if (start[1] && !ownNetwork) throw new Error(`line ${line}: unknown doc-test "${start[1]}"`);
    const commands: DocCommand[] = [];
    for (const l of body) {
      if (l.startsWith("$ ")) commands.push({ command: l.slice(2), expected: [] });
      else if (commands.length === 0) throw new Error(`line ${line}: output before a command`);
      else commands[commands.length - 1].expected.push(l);
    }
    steps.push({ kind: "console", setup, commands, line, ...(ownNetwork ? { ownNetwork } : {}) });
  }
  return steps;
}

/** The parts of a line that change from run to run, made equal. */
export function normalize(line: string): string {
  return line
    .replace(/^(\s*elapsed\s+).*$/, "$1…")
    .replace(/\b\d+ migrations? pending/, "N migrations pending")
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, "<time>")
    .trimEnd();
}

/**
 * Whether `actual` matches `expected`: line by line after `normalize`, where an expected
 * `...` line matches any number of actual lines. Returns null on a match, else why not.
 */
export function compareOutput(expected: string[], actual: string[]): string | null {
  const exp = expected.map(normalize);
  const act = actual.map(normalize);
  for (const lines of [exp, act]) while (lines.at(-1) === "") lines.pop();
  const memo = new Map<string, boolean>();
  const match = (e: number, a: number): boolean => {
    const key = `${e},${a}`;
    if (memo.has(key)) return memo.get(key)!;
    let ok: boolean;
    if (e === exp.length) ok = a === act.length;
    else if (exp[e].trim() === "...") ok = match(e + 1, a) || (a < act.length && match(e, a + 1));
    else ok = a < act.length && lineMatches(exp[e], act[a]) && match(e + 1, a + 1);
    memo.set(key, ok);
    return ok;
  };
  if (match(0, 0)) return null;
  return `expected:\n${expected.join("\n")}\n--- got:\n${actual.join("\n")}`;
}

// A size in a doc ("3.5 MB") matches one within this share of it: code grows.
const SIZE_TOLERANCE = 0.25;
const SIZE = /(\d+(?:\.\d+)?) (MB|MiB|KB|kB)\b/g;

/** An expected line, where `…` stands for any text, against an actual one. */
function lineMatches(expected: string, actual: string): boolean {
  const docSizes = [...expected.matchAll(SIZE)].map((m) => Number(m[1]));
  const sizes = [...actual.matchAll(SIZE)].map((m) => Number(m[1]));
  if (docSizes.length > 0 && docSizes.length === sizes.length) {
    const close = docSizes.every((d, i) => Math.abs(sizes[i] - d) <= d * SIZE_TOLERANCE);
    if (!close) return false;
    return lineMatches(expected.replace(SIZE, "<size> $2"), actual.replace(SIZE, "<size> $2"));
  }
  if (!expected.includes("…")) return expected === actual;
  const pattern = expected.split("…").map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${pattern.join(".*")}$`).test(actual);
}

const SEPARATOR = "@@doc-test-command@@";

/** What one block's run printed: per command, its lines. */
export interface BlockRun {
  outputs: string[][];
  code: number;
}

/**
 * Runs a console block in `dir` with bash, in a process group of its own that is killed
 * at the end (background jobs of the doc, a serve, go with it) or after `timeoutMs`.
 * `envFile` carries the exported environment from block to block.
 */
export async function runBlock(opts: {
  dir: string;
  binDir: string;
  envFile: string;
  setup: string[];
  commands: string[];
  env: Record<string, string>;
  timeoutMs: number;
  ownNetwork?: boolean;
}): Promise<BlockRun> {
  const script = [
    "exec 2>&1",
    ...(opts.ownNetwork ? ["ip link set lo up"] : []),
    `[ -f ${opts.envFile} ] && . ${opts.envFile}`,
    `export PATH=${opts.binDir}:$PATH`,
    ...opts.setup,
    ...opts.commands.flatMap((c) => [`echo ${SEPARATOR}`, c]),
    `export -p > ${opts.envFile}`,
    // The doc's background jobs (a subscriber) end with their block.
    "kill $(jobs -p) 2>/dev/null; wait",
  ].join("\n");
  const child = new Deno.Command("setsid", {
    args: [...(opts.ownNetwork ? ["unshare", "-n"] : []), "bash", "-c", script],
    cwd: opts.dir,
    env: opts.env,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const killGroup = () => {
    try {
      Deno.kill(-child.pid, "SIGKILL");
    } catch { /* already gone */ }
  };
  const timer = setTimeout(killGroup, opts.timeoutMs);
  try {
    const out = await child.output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    const parts = text.split(`${SEPARATOR}\n`);
    parts.shift(); // the set-up's output
    return { outputs: parts.map((p) => p.replace(/\n$/, "").split("\n")), code: out.code };
  } finally {
    clearTimeout(timer);
    killGroup();
  }
}

/** Whether this machine lets a test run a block in a network namespace of its own. */
export async function canUnshareNetwork(): Promise<boolean> {
  try {
    const out = await new Deno.Command("unshare", {
      args: ["-n", "ip", "link", "set", "lo", "up"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

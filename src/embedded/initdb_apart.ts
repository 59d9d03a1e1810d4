/**
 * The embedded database's first start, in a process of its own
 * (docs/performance.md, "Memory budget": embedded serve, idle).
 *
 * A new PGlite data directory is made by initdb inside PGlite's wasm memory, and that
 * memory stays with the process that ran it: after a first start in serve's own process,
 * serve idled at about 330 MB, against about 200 MB when the directory already existed
 * (every later start). Closing that PGlite and opening another does not give it back, nor
 * does running initdb in a Worker (the freed memory stays in the worker thread's malloc
 * arena). So a data directory that does not exist yet is made by a short child process
 * (src/embedded/initdb_child.ts, or `feedline __embedded-initdb <dir>` where this
 * program is one file), which exits with all of that memory; serve then opens the directory as on any restart.
 *
 * Where a child cannot be started (no permission to run one, a program that cannot find
 * itself), the directory is made in this process as before: it only costs memory.
 */
import { PGlite } from "@electric-sql/pglite";

/** `shared_buffers` of the embedded database: a development database, small. */
export const EMBEDDED_SHARED_BUFFERS = "16MB";

/** The hidden command main.ts runs in the child. */
export const INITDB_COMMAND = "__embedded-initdb";

/** How the data directory came to be ready. */
export type DataDirStart = "existing" | "child" | "here";

/** PGlite's settings for every start, the child's included. */
export function pgliteStartParams(): string[] {
  return [...PGlite.defaultStartParams, "-c", `shared_buffers=${EMBEDDED_SHARED_BUFFERS}`];
}

/** True when `pgData` holds a database (PostgreSQL writes PG_VERSION first). */
export async function hasDatabase(pgData: string): Promise<boolean> {
  try {
    return (await Deno.stat(`${pgData}/PG_VERSION`)).isFile;
  } catch {
    return false;
  }
}

/**
 * Makes the database in `pgData` in a child process if there is none yet; returns how
 * the directory is ready ("here": not made, the caller's PGlite makes it in this
 * process). `why` receives the reason a child could not do it.
 */
export async function initDataDirApart(
  pgData: string,
  why: (reason: string) => void = () => {},
): Promise<DataDirStart> {
  if (await hasDatabase(pgData)) return "existing";
  // Files but no database: not ours to touch; PGlite says what it makes of them.
  if (!(await isEmptyDir(pgData))) return "here";
  if (Deno.permissions.querySync({ name: "run" }).state !== "granted") {
    why("no permission to run a child process (--allow-run)");
    return "here";
  }
  const args = await childArgs(pgData);
  try {
    const done = await new Deno.Command(Deno.execPath(), {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    if (done.success && await hasDatabase(pgData)) return "child";
    const said = new TextDecoder().decode(done.stderr).trim().split("\n").at(-1) ?? "";
    why(`the child exited with ${done.code}${said ? `: ${said}` : ""}`);
  } catch (error) {
    why(error instanceof Error ? error.message : String(error));
  }
  // A child that died half-way leaves files PGlite cannot open; the directory was empty.
  await Deno.remove(pgData, { recursive: true }).catch(() => {});
  await Deno.mkdir(pgData, { recursive: true });
  return "here";
}

async function isEmptyDir(path: string): Promise<boolean> {
  for await (const _ of Deno.readDir(path)) return false;
  return true;
}

/**
 * How to run the child: a compiled program runs itself with INITDB_COMMAND; from the
 * source tree the runtime runs initdb_child.ts (with the checkout's deno.json, wherever
 * serve was started from); anything else (a bundle) runs its main module with
 * INITDB_COMMAND, which main.ts dispatches.
 */
async function childArgs(pgData: string): Promise<string[]> {
  if (Deno.build.standalone) return [INITDB_COMMAND, pgData];
  const run = ["run", "--allow-all", "--no-prompt", "--quiet"];
  const entry = new URL("./initdb_child.ts", import.meta.url);
  const config = new URL("../../deno.json", import.meta.url);
  if (entry.protocol === "file:" && await isFile(entry) && await isFile(config)) {
    return [...run, "--config", config.pathname, entry.href, pgData];
  }
  return [...run, Deno.mainModule, INITDB_COMMAND, pgData];
}

async function isFile(url: URL): Promise<boolean> {
  try {
    return (await Deno.stat(url)).isFile;
  } catch {
    return false;
  }
}

/** The child: makes the database in `pgData` and exits (main.ts, INITDB_COMMAND). */
export async function runInitdbChild(args: string[]): Promise<void> {
  const [pgData] = args;
  if (!pgData || args.length !== 1) throw new Error(`usage: ${INITDB_COMMAND} <directory>`);
  const db = await PGlite.create(pgData, { startParams: pgliteStartParams() });
  await db.close();
}

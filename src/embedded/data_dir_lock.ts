/**
 * One process at a time opens an embedded data directory. PGlite has no locking of its
 * own: two processes on one `pgdata` corrupt it. The holder writes `<data-dir>/lock`
 * (created exclusively) with its pid and command; a later process finds it and, while
 * that pid is alive, is refused with one line saying who holds it and what to do. A lock
 * left by a process that died is taken over.
 */
import { FeedlineError } from "../errors.ts";

/** What the lock file holds. */
export interface LockHolder {
  pid: number;
  command: string;
}

/** A held lock; `release()` removes the file. */
export interface DataDirLock {
  path: string;
  release(): Promise<void>;
}

function pathOf(dataDir: string): string {
  return `${dataDir.replace(/\/$/, "")}/lock`;
}

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch (error) {
    // EPERM: it exists but is not ours to signal.
    return error instanceof Deno.errors.PermissionDenied;
  }
}

/** Reads the holder of `dataDir`'s lock, or null when there is none or it is stale. */
export async function lockHolder(dataDir: string): Promise<LockHolder | null> {
  try {
    const holder = JSON.parse(await Deno.readTextFile(pathOf(dataDir))) as LockHolder;
    return alive(holder.pid) ? holder : null;
  } catch {
    return null;
  }
}

/**
 * Takes the lock of `dataDir` for `command` (e.g. "feedline serve"). Throws
 * DATA_DIR_LOCKED naming the holder when a live process has it.
 */
export async function lockDataDir(dataDir: string, command: string): Promise<DataDirLock> {
  await Deno.mkdir(dataDir, { recursive: true });
  const path = pathOf(dataDir);
  const me: LockHolder = { pid: Deno.pid, command };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await Deno.writeTextFile(path, JSON.stringify(me) + "\n", { createNew: true });
      let released = false;
      return {
        path,
        async release() {
          if (released) return;
          released = true;
          await Deno.remove(path).catch(() => {});
        },
      };
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
    let holder: LockHolder | null = null;
    try {
      holder = JSON.parse(await Deno.readTextFile(path)) as LockHolder;
    } catch {
      // Being written right now, or unreadable: look again.
      await new Promise((r) => setTimeout(r, 50));
    }
    if (holder && alive(holder.pid)) {
      throw new FeedlineError(
        "DATA_DIR_LOCKED",
        `${dataDir} is in use by ${holder.command ?? "another feedline"} (pid ${holder.pid}); ` +
          `stop it first, or use --data-dir to pick another folder`,
      );
    }
    if (holder) await Deno.remove(path).catch(() => {});
  }
  throw new FeedlineError("DATA_DIR_LOCKED", `cannot take the lock ${path}; remove it if stale`);
}

/**
 * Helpers for the benchmark's child processes: spawn a Deno script, read its stdout line
 * by line, wait for a line, stop it by its own pid; run the publisher.
 */
import type { PublisherConfig, PublisherReport } from "./publisher.ts";

/** A spawned Deno process whose stdout is read line by line. */
export interface Child {
  process: Deno.ChildProcess;
  pid: number;
  /** Resolves with the first stdout line for which `test` is true (or rejects at exit). */
  waitForLine(test: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  /** Sends `signal`, waits up to `graceMs`, then SIGKILL. */
  stop(signal?: Deno.Signal, graceMs?: number): Promise<Deno.CommandStatus>;
}

/** Runs `deno <args>` with stdout piped and stderr inherited. */
export function spawnDeno(args: string[], opts: { echo?: boolean } = {}): Child {
  const process = new Deno.Command(Deno.execPath(), {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines: string[] = [];
  const waiters: { test: (l: string) => boolean; resolve: (l: string) => void }[] = [];
  let exited = false;
  const onExit: (() => void)[] = [];
  (async () => {
    let rest = "";
    for await (const chunk of process.stdout.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      let nl;
      while ((nl = rest.indexOf("\n")) !== -1) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        if (opts.echo) console.error(`  | ${line}`);
        lines.push(line);
        for (const w of [...waiters]) {
          if (w.test(line)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
      }
    }
  })().finally(() => {
    exited = true;
    for (const f of onExit) f();
  });
  const status = process.status;
  return {
    process,
    pid: process.pid,
    waitForLine(test, timeoutMs = 3_600_000) {
      const seen = lines.find(test);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error("timed out waiting for a line")),
          timeoutMs,
        );
        const fail = () => {
          clearTimeout(timer);
          reject(new Error(`child ${args.join(" ").slice(0, 80)} exited without the line`));
        };
        if (exited) return fail();
        onExit.push(fail);
        waiters.push({
          test,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
      });
    },
    async stop(signal = "SIGTERM", graceMs = 30_000) {
      try {
        process.kill(signal);
      } catch {
        // already exited
      }
      const timer = setTimeout(() => {
        try {
          process.kill("SIGKILL");
        } catch {
          // already exited
        }
      }, graceMs);
      const s = await status;
      clearTimeout(timer);
      return s;
    },
  };
}

/** Peak resident set size (VmHWM) of a Linux process in bytes, or null. */
export function peakRssBytes(pid: number): Promise<number | null> {
  return statusBytes(pid, "VmHWM");
}

/** Current resident set size (VmRSS) of a Linux process in bytes, or null. */
export function rssBytes(pid: number): Promise<number | null> {
  return statusBytes(pid, "VmRSS");
}

async function statusBytes(pid: number, field: "VmHWM" | "VmRSS"): Promise<number | null> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, "m").exec(status);
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * CPU seconds (user + system) a Linux process has used so far, or null. Unlike wall-clock
 * rates, this barely moves when other work shares the machine: the benchmark reports it
 * per message to compare versions on a busy host.
 */
export async function cpuSeconds(pid: number): Promise<number | null> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 of the whole line, in clock ticks (100/s).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

/** utime, stime, cutime, cstime of one /proc/<pid>/stat line, in seconds. */
function statCpu(stat: string): { own: number; children: number } {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return {
    own: (Number(fields[11]) + Number(fields[12])) / 100,
    children: (Number(fields[13]) + Number(fields[14])) / 100,
  };
}

/**
 * CPU seconds used so far by the local PostgreSQL server: every process whose command
 * is `postgres` (postmaster, backends, WAL writer, checkpointer...), plus what exited
 * backends left in their parent's children time. The difference of two readings is the
 * server's CPU in between, whichever backends came and went; work by other clients of
 * the same server is included, so read it on an otherwise idle server.
 */
export async function postgresCpuSeconds(): Promise<number> {
  let total = 0;
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    let stat: string;
    try {
      stat = await Deno.readTextFile(`/proc/${entry.name}/stat`);
    } catch {
      continue; // exited meanwhile
    }
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    if (comm !== "postgres") continue;
    const cpu = statCpu(stat);
    total += cpu.own + cpu.children;
  }
  return total;
}

/** Runs bench/publisher.ts as its own process and returns its report. */
export async function runPublisher(pc: PublisherConfig): Promise<PublisherReport> {
  const child = spawnDeno([
    "run",
    "-A",
    new URL("./publisher.ts", import.meta.url).pathname,
    JSON.stringify(pc),
  ]);
  const line = await child.waitForLine((l) => l.startsWith("{"));
  await child.process.status;
  return JSON.parse(line);
}

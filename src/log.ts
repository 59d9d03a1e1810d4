/**
 * Logging: JSON lines when stdout is not a terminal (for log shippers), readable lines
 * when it is. Secrets never reach a log line: URLs are printed through `redactUrl`.
 */

/** Log levels, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** A logger with structured fields. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** Creates a logger writing to stdout (or `write`, for tests). */
export function createLogger(opts: {
  level?: LogLevel;
  format?: "auto" | "json" | "text";
  write?: (line: string) => void;
} = {}): Logger {
  const min = RANK[opts.level ?? "info"];
  const json = opts.format === "json" ||
    ((opts.format ?? "auto") === "auto" && !Deno.stdout.isTerminal());
  const encoder = new TextEncoder();
  const write = opts.write ??
    ((line: string) => Deno.stdout.writeSync(encoder.encode(line + "\n")));
  const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (RANK[level] < min) return;
    if (json) {
      write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }));
    } else {
      const extra = fields && Object.keys(fields).length > 0
        ? " " + Object.entries(fields).map(([k, v]) => `${k}=${formatValue(v)}`).join(" ")
        : "";
      const tag = level === "info" ? "" : `${level.toUpperCase()} `;
      write(`${new Date().toISOString().slice(11, 23)} ${tag}${msg}${extra}`);
    }
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
  };
}

function formatValue(v: unknown): string {
  if (typeof v === "string") return /\s/.test(v) ? JSON.stringify(v) : v;
  return JSON.stringify(v);
}

/** A logger that drops everything (tests, library use). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

/** `mqtt://user:secret@host` → `mqtt://user:***@host`; query tokens are masked too. */
export function redactUrl(url: string | undefined): string {
  if (!url) return "";
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    for (const key of [...u.searchParams.keys()]) {
      if (/pass|secret|token|key/i.test(key)) u.searchParams.set(key, "***");
    }
    return u.toString();
  } catch {
    return "<unparsable url>";
  }
}

/**
 * Logging: JSON lines when stdout is not a terminal (for log shippers), readable lines
 * when it is. Secrets never reach a log line: URLs are printed through `redactUrl`, and
 * every line passes `redactText`, which masks the configured secrets (wherever an error
 * message may have picked them up), URL passwords and token-like query parameters.
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
  /** Strings masked in every line (passwords, tokens); see `secretsOf`. */
  secrets?: string[];
} = {}): Logger {
  const min = RANK[opts.level ?? "info"];
  const json = opts.format === "json" ||
    ((opts.format ?? "auto") === "auto" && !Deno.stdout.isTerminal());
  const encoder = new TextEncoder();
  const out = opts.write ??
    ((line: string) => Deno.stdout.writeSync(encoder.encode(line + "\n")));
  const secrets = expandSecrets(opts.secrets ?? []);
  const write = (line: string) => out(redactText(line, secrets));
  const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (RANK[level] < min) return;
    if (json) {
      write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }));
    } else {
      const extra = fields && Object.keys(fields).length > 0
        ? " " + Object.entries(fields).map(([k, v]) => `${k}=${formatValue(v)}`).join(" ")
        : "";
      const tag = level === "info" ? "" : `${level.toUpperCase()} `;
      // The date too: a service's log outlives the day (2026-01-02 10:11:12.345, UTC).
      const at = new Date().toISOString().replace("T", " ").slice(0, 23);
      write(`${at} ${tag}${msg}${extra}`);
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

const URL_PASSWORD_RE = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:/@"'?#]*):[^\s@/"']*@/gi;
const QUERY_SECRET_RE = /([?&][^=&\s"']*(?:pass|secret|token|key)[^=&\s"']*=)[^&\s"'#]+/gi;

/**
 * Masks secrets in a piece of text: each of `secrets` (as given; callers pass
 * `expandSecrets` output so encoded spellings are caught too), the password of any
 * `scheme://user:password@` URL, and query parameters named like pass/secret/token/key.
 */
export function redactText(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const s of secrets) if (out.includes(s)) out = out.replaceAll(s, "***");
  return out.replace(URL_PASSWORD_RE, "$1:***@").replace(QUERY_SECRET_RE, "$1***");
}

/**
 * A secret as it may appear in a line: as is, percent-decoded (from a URL) and
 * JSON-escaped (inside a JSON line). Secrets shorter than 3 characters are not masked
 * by value: masking every "a" would garble the log without protecting anything.
 */
export function expandSecrets(secrets: readonly (string | undefined)[]): string[] {
  const out = new Set<string>();
  for (const s of secrets) {
    if (!s || s.length < 3) continue;
    const spellings = [s, encodeURIComponent(s)];
    try {
      spellings.push(decodeURIComponent(s));
    } catch {
      // Not percent-encoded.
    }
    for (const spelling of spellings) {
      out.add(spelling);
      out.add(JSON.stringify(spelling).slice(1, -1));
    }
  }
  // Longest first, so a secret containing another is masked whole.
  return [...out].filter((s) => s.length >= 3).sort((a, b) => b.length - a.length);
}

/** The secrets inside a URL: its password and token-like query values. */
export function secretsOfUrl(url: string | undefined): string[] {
  if (!url) return [];
  try {
    const u = new URL(url);
    const out = u.password ? [u.password] : [];
    for (const [key, value] of u.searchParams) {
      if (/pass|secret|token|key/i.test(key) && value) out.push(value);
    }
    return out;
  } catch {
    return [];
  }
}

/**
 * serve's default MQTT client id (docs/delivery.md): `feedline-<hostname>-<8 hex digits>`,
 * the digits a hash of the data dir's absolute path and, with a DATABASE_URL, of the
 * database's identity (the URL without its password). The broker keeps serve's session
 * (and backlog) under this id, so it stays the same across restarts of one installation,
 * while two installations on one host, or one folder pointed at two databases, never resume
 * each other's session, whose backlog would land in the wrong database.
 */

/**
 * The identity of a database URL: user, host(s), port and database name, without password
 * or parameters (sslmode does not make another database). `PGHOST`/`PGPORT` fill in what
 * the URL leaves out, as libpq does.
 */
export function databaseIdentity(
  url: string | undefined,
  env: Record<string, string | undefined> = {},
): string | null {
  if (!url) return null;
  try {
    const u = new URL(url);
    const host = (u.hostname || env.PGHOST || "").toLowerCase();
    const port = u.port || env.PGPORT || "5432";
    const database = decodeURIComponent(u.pathname.replace(/^\//, "")) || u.username;
    return `${decodeURIComponent(u.username)}@${host}:${port}/${database}`;
  } catch {
    // Not a URL (several hosts, say): drop the password and the parameters.
    return url.replace(/^([^:]+:\/\/[^:@/]*):[^@/]*@/, "$1@").replace(/\?.*$/, "");
  }
}

/**
 * `feedline-<hostname>-<8 hex digits>` for the data dir (relative to `cwd`) and, when serve
 * uses a DATABASE_URL, its `databaseIdentity`. With the embedded database the id is the one
 * earlier releases derived from the data dir alone (that database lives in the data dir).
 */
export function defaultClientId(
  dataDir: string,
  cwd = safeCwd(),
  database: string | null = null,
): string {
  const path = dataDir.startsWith("/") ? dataDir : `${cwd.replace(/\/$/, "")}/${dataDir}`;
  const normalized = path.replace(/\/+$/, "").replace(/\/\.(?=\/|$)/g, "");
  const key = database === null ? normalized : `${normalized}\n${database}`;
  let h = 0x811c9dc5; // FNV-1a, 32 bits
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return `feedline-${safeHostname()}-${h.toString(16).padStart(8, "0")}`;
}

function safeCwd(): string {
  try {
    return Deno.cwd();
  } catch {
    return "/";
  }
}

/** The host name, as far as it is allowed in a client id. */
export function safeHostname(): string {
  try {
    return Deno.hostname().replace(/[^A-Za-z0-9_.-]/g, "-");
  } catch {
    return "local";
  }
}

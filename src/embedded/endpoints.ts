/**
 * Where a running `serve` with embedded services can be reached: written to
 * `<data-dir>/endpoints.json` while it runs, so that `simulate` or `replay --publish` in
 * another terminal find the embedded broker (and database) without flags, even when the
 * broker had to move off port 1883.
 */
import { FeedlineError } from "../errors.ts";

/** What `serve` publishes about itself. */
export interface Endpoints {
  mqttUrl: string;
  /** Only for the embedded database; a real DATABASE_URL is never written to disk. */
  databaseUrl?: string;
  httpPort: number | null;
  pid: number;
  /**
   * Whether serve creates unknown users, devices and feeds: then traffic for unknown
   * feeds and devices is stored, not rejected (`simulate` says so in its summary).
   */
  autoRegister?: boolean;
}

function pathOf(dataDir: string): string {
  return `${dataDir.replace(/\/$/, "")}/endpoints.json`;
}

/**
 * Writes the endpoints file. No secret is written to disk: a broker URL loses its
 * password and token-like parameters (a client reading the file brings its own, e.g.
 * MQTT_PASSWORD); see docs/security.md#secrets.
 */
export async function writeEndpoints(dataDir: string, endpoints: Endpoints): Promise<void> {
  await Deno.mkdir(dataDir, { recursive: true });
  const safe = {
    ...endpoints,
    mqttUrl: withoutSecrets(endpoints.mqttUrl),
    ...(endpoints.databaseUrl ? { databaseUrl: withoutSecrets(endpoints.databaseUrl) } : {}),
  };
  await Deno.writeTextFile(pathOf(dataDir), JSON.stringify(safe, null, 2) + "\n");
}

/** `mqtt://u:pw@h/?token=t` → `mqtt://u@h/`. */
export function withoutSecrets(url: string): string {
  try {
    const u = new URL(url);
    u.password = "";
    for (const key of [...u.searchParams.keys()]) {
      if (/pass|secret|token|key/i.test(key)) u.searchParams.delete(key);
    }
    return u.href;
  } catch {
    return "";
  }
}

/** Removes the endpoints file (on shutdown). */
export async function removeEndpoints(dataDir: string): Promise<void> {
  await Deno.remove(pathOf(dataDir)).catch(() => {});
}

/** Reads the endpoints of a running `serve`, or null when none is running. */
export async function readEndpoints(dataDir: string): Promise<Endpoints | null> {
  try {
    const endpoints = JSON.parse(await Deno.readTextFile(pathOf(dataDir))) as Endpoints;
    // A file left by a process that was killed points at nothing.
    try {
      Deno.kill(endpoints.pid, "SIGCONT");
    } catch {
      return null;
    }
    return endpoints;
  } catch {
    return null;
  }
}

/**
 * The database to use: the given URL, else the embedded database of a `serve` running on
 * this data directory (one process at a time opens it), else undefined: open our own.
 */
export async function databaseUrlOrRunningServe(
  url: string | undefined,
  dataDir: string,
): Promise<string | undefined> {
  return url ?? (await readEndpoints(dataDir))?.databaseUrl;
}

/**
 * The broker to publish to: the given URL, else the embedded broker of a running `serve`
 * (`embedded`: it speaks MQTT 3.1.1 only). Throws BROKER_UNREACHABLE when there is none.
 */
export async function brokerOrRunningServe(
  url: string | undefined,
  dataDir: string,
): Promise<{ url: string; embedded: boolean; endpoints: Endpoints | null }> {
  if (url) return { url, embedded: false, endpoints: null };
  const endpoints = await readEndpoints(dataDir);
  if (!endpoints) {
    throw new FeedlineError(
      "BROKER_UNREACHABLE",
      "no broker to publish to: set MQTT_URL (or --mqtt-url), or start `feedline serve` " +
        `with its embedded broker in another terminal (none running under --data-dir ${dataDir})`,
    );
  }
  return { url: endpoints.mqttUrl, embedded: true, endpoints };
}

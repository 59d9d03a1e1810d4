/**
 * Ports serve's embedded services moved to, remembered in `<data-dir>/ports.json`: when a
 * default port is taken (1883 often by a system Mosquitto, 8080 by another server, 5433 by
 * a second PostgreSQL), the embedded broker, the status page and the embedded database fall
 * back to a free port, and the next start of the
 * same data dir tries that same port again, so a device, script or bookmark configured once
 * keeps working (docs/operations.md, "Starting"). Small and read once per start: sync I/O.
 */

/** The services whose fallback port is kept. */
export type PortName = "mqtt" | "http" | "db";

function pathOf(dataDir: string): string {
  return `${dataDir.replace(/\/$/, "")}/ports.json`;
}

/** The port remembered for `name`, or null (no file, unreadable, or not a port). */
export function rememberedPort(dataDir: string, name: PortName): number | null {
  try {
    const port = JSON.parse(Deno.readTextFileSync(pathOf(dataDir)))?.[name];
    return Number.isInteger(port) && port > 0 && port < 65536 ? port : null;
  } catch {
    return null;
  }
}

/** Remembers `port` for `name`, keeping the others; returns the file's path. */
export function rememberPort(dataDir: string, name: PortName, port: number): string {
  const path = pathOf(dataDir);
  let ports: Record<string, unknown> = {};
  try {
    ports = JSON.parse(Deno.readTextFileSync(path)) ?? {};
  } catch { /* none yet */ }
  Deno.mkdirSync(dataDir, { recursive: true });
  Deno.writeTextFileSync(path, JSON.stringify({ ...ports, [name]: port }, null, 2) + "\n");
  return path;
}

/** The remembered ports of a data dir, for `serve --print-config`. */
export function rememberedPorts(dataDir: string): Record<PortName, number | null> {
  return {
    mqtt: rememberedPort(dataDir, "mqtt"),
    http: rememberedPort(dataDir, "http"),
    db: rememberedPort(dataDir, "db"),
  };
}

/**
 * How serve's HTTP address may move (src/ops/http_listen.ts): only an address nobody gave,
 * with an embedded broker or database, moves off a taken port, to the one it moved to at
 * the last start of the data dir if that is free.
 */
export function httpAddressChoice(config: {
  httpGivenBy: "--http" | "HTTP_ADDR" | null;
  embeddedBroker: boolean;
  databaseUrl?: string;
  dataDir: string;
}) {
  return {
    givenBy: config.httpGivenBy,
    fallBack: config.embeddedBroker || !config.databaseUrl,
    remember: {
      get: () => rememberedPort(config.dataDir, "http"),
      set: (port: number) => rememberPort(config.dataDir, "http", port),
    },
  };
}

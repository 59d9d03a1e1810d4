/**
 * Ports the embedded services moved to, remembered in `<data-dir>/ports.json`: when port 1883
 * is taken (often by a system Mosquitto), the embedded broker falls back to a free port, and
 * the next start of the same data dir tries that same port again, so a device or script
 * configured once keeps working (docs/operations.md, "Starting").
 */

/** The service names kept in the file. */
export type PortName = "mqtt";

function pathOf(dataDir: string): string {
  return `${dataDir.replace(/\/$/, "")}/ports.json`;
}

/** The port remembered for `name`, or null (no file, unreadable, or not a port). */
export async function rememberedPort(dataDir: string, name: PortName): Promise<number | null> {
  try {
    const ports = JSON.parse(await Deno.readTextFile(pathOf(dataDir)));
    const port = ports?.[name];
    return Number.isInteger(port) && port > 0 && port < 65536 ? port : null;
  } catch {
    return null;
  }
}

/** Remembers `port` for `name`, keeping the others; returns the file's path. */
export async function rememberPort(dataDir: string, name: PortName, port: number): Promise<string> {
  const path = pathOf(dataDir);
  let ports: Record<string, unknown> = {};
  try {
    ports = JSON.parse(await Deno.readTextFile(path)) ?? {};
  } catch { /* none yet */ }
  await Deno.mkdir(dataDir, { recursive: true });
  await Deno.writeTextFile(path, JSON.stringify({ ...ports, [name]: port }, null, 2) + "\n");
  return path;
}

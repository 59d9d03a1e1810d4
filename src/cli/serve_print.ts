/**
 * `serve --print-config`: the values the defaults' rules resolve to for this configuration
 * (client id, protocol, auto-register, ack window, the embedded services' addresses), worked
 * out without connecting anywhere; what only the start or the broker decides is marked
 * `(at start: …)` or `(at connect: …)` (docs/operations.md, "Starting").
 */
import { appliedSecretFiles, formatConfig } from "./secrets.ts";
import { type ServeConfig, serveOptions } from "./serve_options.ts";
import { defaultClientId } from "./client_id.ts";
/** What `--print-config` shows for options left to their defaults, by option key. */
export function resolvedServeValues(
  config: ServeConfig,
  remembered: { mqtt: number | null; http: number | null; db?: number | null },
  cwd = Deno.cwd(),
): Record<string, string> {
  const rememberedMqttPort = remembered.mqtt;
  const dataDir = config.dataDir.startsWith("/")
    ? config.dataDir
    : `${cwd.replace(/\/$/, "")}/${config.dataDir.replace(/^\.\//, "")}`;
  const out: Record<string, string> = { dataDir };
  if (config.embeddedBroker) {
    const port = config.embeddedMqttPort;
    const moved = rememberedMqttPort && rememberedMqttPort !== port
      ? `${rememberedMqttPort}, remembered in ${dataDir}/ports.json`
      : "a free one, then remembered in the data dir";
    out.mqttUrl = `mqtt://127.0.0.1:${port} (embedded broker; at start, if ${port} is taken: ` +
      `${moved})`;
  }
  out.mqttProtocol = config.protocolVersion === 5 ? "5" : "3.1.1" +
    (config.embeddedBroker ? " (the embedded broker's)" : "");
  const fromDatabase = config.databaseUrl !== undefined;
  out.clientId = `${config.clientId} (from the host name, the data dir` +
    (fromDatabase ? ` and the database; earlier releases: ${defaultClientId(dataDir)})` : `)`);
  out.ackWindow = `${config.ackWindow} (at connect: ` +
    (config.protocolVersion === 5
      ? "sent as Receive Maximum; a smaller window the broker keeps is learnt)"
      : "the broker's in-flight window; a smaller one it keeps is learnt)");
  out.autoRegister = config.autoRegister
    ? "true (the embedded database)"
    : "false (a DATABASE_URL is given)";
  if (!fromDatabase) {
    const last = remembered.db;
    out.databaseUrl = `embedded PGlite in ${dataDir}/pgdata, on 127.0.0.1:` +
      `${config.embeddedDbPort} (at start, if it is taken: ` +
      (last && last !== config.embeddedDbPort
        ? `port ${last}, remembered in ${dataDir}/ports.json)`
        : "a free port, then remembered)");
  }
  out.listenDatabaseUrl = !fromDatabase
    ? "none (the embedded database has no LISTEN over its socket)"
    : config.dbPooler === "transaction"
    ? "none (--db-pooler transaction: feed changes reach the cache by --feed-cache-ttl-ms)"
    : "the database URL";
  // As src/embedded/remembered_ports.ts httpAddressChoice: only an address nobody gave moves.
  if (
    config.httpGivenBy === null && config.http !== "off" && (config.embeddedBroker || !fromDatabase)
  ) {
    const last = remembered.http;
    out.http = `${config.http} (at start, if it is taken: ` +
      (last
        ? `port ${last}, remembered in ${dataDir}/ports.json)`
        : "a free port, then remembered)");
  }
  return out;
}

/** The text `serve --print-config` prints. */
export function formatServeConfig(
  args: string[],
  env: Record<string, string | undefined>,
  config: ServeConfig,
  /** The ports a previous start of the data dir moved to (src/embedded/remembered_ports.ts). */
  remembered: { mqtt: number | null; http: number | null; db?: number | null },
): string {
  const resolved = resolvedServeValues(config, remembered);
  return formatConfig(serveOptions, args, env, appliedSecretFiles(), "serve", resolved);
}

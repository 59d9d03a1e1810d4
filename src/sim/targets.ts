/**
 * Where `simulate` publishes (and registers): what flags and environment left open is
 * filled in from a running `serve`, found through its endpoints file under --data-dir.
 */
import { FeedlineError } from "../errors.ts";
import type { MqttTlsOptions, MqttTlsSettings } from "../mqtt/tls.ts";

/** What a running `serve` says about itself (`src/embedded/endpoints.ts`), as read here. */
export interface FoundServe {
  mqttUrl: string;
  /** Its embedded database; absent when serve writes to a real DATABASE_URL. */
  databaseUrl?: string;
  /** Whether it creates unknown users, devices and feeds (absent: an older serve). */
  autoRegister?: boolean;
}

/** The options target resolution reads. */
export interface TargetOptions {
  mqttUrl?: string;
  databaseUrl?: string;
  register?: boolean;
  mqttProtocol?: "5" | "3.1.1";
  dataDir: string;
  /** `--database-url` or `DATABASE_URL`, whichever gave it, for errors. */
  databaseUrlFrom?: string;
}

/** Where simulate publishes (and registers), once flags, env and a running serve are read. */
export interface SimulateTargets {
  mqttUrl: string;
  protocolVersion: 4 | 5;
  databaseUrl: string | null;
  /** What to check when the database cannot be reached: the flag, variable or serve. */
  databaseUrlFrom?: string;
  register: boolean;
  /** True when the broker came from a running serve's endpoints file. */
  foundServe: boolean;
  /**
   * Whether the serve behind the broker auto-registers, so that unknown_feed and
   * unknown_device traffic is stored rather than rejected; null when not known (a broker
   * given by MQTT_URL, or a serve that does not say).
   */
  autoRegister: boolean | null;
  /**
   * MQTT.js's TLS options (`ca`, `cert`, `key`, `rejectUnauthorized`), read by the
   * command from --mqtt-ca-file and the like (src/mqtt/tls.ts).
   */
  tls?: MqttTlsOptions;
  /** The TLS settings they came from, to explain a failed connect (src/mqtt/connect.ts). */
  tlsSettings?: MqttTlsSettings;
}

/**
 * Fills in what flags and env left open from a running `serve` (`findServe` reads its
 * endpoints file under --data-dir): its broker, and its embedded database for
 * --register. Throws one actionable line when there is nothing to publish to.
 */
export async function resolveTargets(
  config: TargetOptions,
  findServe: (dataDir: string) => Promise<FoundServe | null>,
): Promise<SimulateTargets> {
  const needEndpoints = !config.mqttUrl || (!config.databaseUrl && config.register !== false);
  const endpoints = needEndpoints ? await findServe(config.dataDir) : null;
  const mqttUrl = config.mqttUrl ?? endpoints?.mqttUrl;
  if (!mqttUrl) {
    throw new FeedlineError(
      "BROKER_UNREACHABLE",
      `no broker to publish to: set MQTT_URL, or start \`deno task serve\` in another terminal ` +
        `(no running serve found under --data-dir ${config.dataDir})`,
    );
  }
  const foundServe = !config.mqttUrl;
  const dbFromServe = !config.databaseUrl && endpoints?.databaseUrl ? endpoints.databaseUrl : null;
  const databaseUrl = config.databaseUrl ?? dbFromServe;
  const register = config.register ?? dbFromServe !== null;
  if (register && !databaseUrl) {
    throw new FeedlineError(
      "CONFIG_INVALID",
      "--register needs DATABASE_URL (or a running serve with its embedded database)",
    );
  }
  // A broker found through serve may be its embedded aedes, which speaks 3.1.1 only;
  // every broker speaks 3.1.1.
  const protocol = config.mqttProtocol ?? (foundServe ? "3.1.1" : "5");
  return {
    mqttUrl,
    protocolVersion: protocol === "5" ? 5 : 4,
    databaseUrl,
    ...(databaseUrl === null ? {} : {
      databaseUrlFrom: config.databaseUrl
        ? config.databaseUrlFrom ?? "DATABASE_URL"
        : `the serve using --data-dir ${config.dataDir}`,
    }),
    register,
    foundServe,
    autoRegister: foundServe ? endpoints?.autoRegister ?? null : null,
  };
}

/** The logger `serve` uses: its level and format, with the configuration's secrets masked. */
import { createLogger, type Logger, type LogLevel, secretsOfUrl } from "../log.ts";

/** Creates serve's logger; `write` replaces stdout (tests). */
export function createServeLogger(
  config: {
    logLevel: LogLevel;
    logFormat: "auto" | "json" | "text";
    mqttUrl?: string;
    mqttPassword?: string;
    databaseUrl?: string;
    listenDatabaseUrl?: string;
  },
  write?: (line: string) => void,
): Logger {
  return createLogger({
    level: config.logLevel,
    format: config.logFormat,
    write,
    secrets: [
      config.mqttPassword,
      ...secretsOfUrl(config.mqttUrl),
      ...secretsOfUrl(config.databaseUrl),
      ...secretsOfUrl(config.listenDatabaseUrl),
    ].filter((s): s is string => !!s),
  });
}

/**
 * The `ready` log line: the last line of serve's start-up, once it is subscribed and writing,
 * with what a newcomer needs next (docs/operations.md, "Starting"): where to publish (a
 * `mosquitto_pub` command to copy, for the embedded broker), the status page, the database.
 */
import { type Logger, redactUrl } from "../log.ts";

/** A user id for the example command; any UUID will do. */
export const EXAMPLE_USER = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";

/** What the ready line reports, from the running serve. */
export interface ReadyFacts {
  mqttUrl: string;
  embeddedBroker: boolean;
  /** The feed topic template (`--feed-topic`); null when `--mappings` replaces it. */
  feedTopic: string | null;
  autoRegister: boolean;
  /** `--http`'s host and the port it listens on; null with `--http off`. */
  http: { hostname: string; port: number } | null;
  /** Where the database is (openDatabase's `where`, no secret). */
  database: string;
}

/** The `ready` line's fields. */
export function readyFields(facts: ReadyFacts): Record<string, unknown> {
  const fields: Record<string, unknown> = { broker: redactUrl(facts.mqttUrl) };
  if (facts.embeddedBroker && facts.feedTopic) {
    const { hostname, port } = new URL(facts.mqttUrl);
    const topic = facts.feedTopic.replace("{user_id}", EXAMPLE_USER)
      .replace("{device_code}", "dev1").replace("{feed_key}", "temperature");
    fields.publish = `mosquitto_pub -h ${hostname} -p ${port} -t ${topic} -m 21.5`;
    if (!facts.autoRegister) fields.note = "register the user, device and feed first (README)";
  }
  if (facts.http) {
    // A wildcard bind is reached on loopback from this machine.
    const host = ["0.0.0.0", "::", ""].includes(facts.http.hostname)
      ? "127.0.0.1"
      : facts.http.hostname;
    fields.status_page = `http://${host.includes(":") ? `[${host}]` : host}:${facts.http.port}/`;
  }
  fields.database = facts.database;
  return fields;
}

/** The parts of serve's configuration the ready line reads. */
export interface ReadyConfig {
  embeddedBroker: boolean;
  autoRegister: boolean;
  feedTopic: string;
  mappings?: string;
  /** `--http`: `host:port`, `[v6]:port`, a port, or `off`. */
  http: string;
}

/** The host of an `--http` address (`127.0.0.1` when only a port is given). */
function httpHost(http: string): string {
  const m = /^\[?(.*?)\]?:\d+$/.exec(http.trim());
  return m?.[1] || "127.0.0.1";
}

/**
 * Logs `ready` once, when serve has both subscribed and started its batch loop (in either
 * order: the SUBACK may come before or after the start finishes). `live` gives what is known
 * only once started: the broker's URL, the HTTP port, where the database is.
 */
export function readyOnce(
  log: Logger,
  config: ReadyConfig,
  live: () => { mqttUrl: string; httpPort: number | null; database: string },
) {
  let subscribed = false;
  let started = false;
  let said = false;
  const check = () => {
    if (!subscribed || !started || said) return;
    said = true;
    const { mqttUrl, httpPort, database } = live();
    log.info(
      "ready",
      readyFields({
        ...{ mqttUrl, database, embeddedBroker: config.embeddedBroker },
        ...{ autoRegister: config.autoRegister },
        feedTopic: config.mappings ? null : config.feedTopic,
        http: httpPort === null ? null : { hostname: httpHost(config.http), port: httpPort },
      }),
    );
  };
  return {
    subscribed() {
      subscribed = true;
      check();
    },
    started() {
      started = true;
      check();
    },
  };
}

/**
 * MQTT brokers for tests: the shared broker named by `TEST_MQTT_URL` (a real
 * broker, MQTT v5) or an embedded aedes broker (MQTT 3.1.1 only), and a private
 * Mosquitto process for tests that stop, kill or restart the broker.
 *
 * @module
 */

import { createServer } from "node:net";
import { startEmbeddedBroker } from "../../src/embedded/services.ts";

/** A broker for one test. */
export interface TestBroker {
  url: string;
  /** The newest MQTT version the broker speaks: 5 for a real broker, 4 for aedes. */
  protocolVersion: 4 | 5;
  /** Stops the embedded broker; leaves a `TEST_MQTT_URL` broker alone. */
  close(): Promise<void>;
}

/**
 * Returns the `TEST_MQTT_URL` broker (assumed MQTT v5, as Mosquitto 2 is) or
 * starts an embedded aedes broker on a free port. The `TEST_MQTT_URL` broker is
 * shared, so tests must use their own client ids and topics.
 *
 * @example
 * ```ts
 * const broker = await createTestBroker();
 * const client = mqtt.connect(broker.url, { protocolVersion: broker.protocolVersion });
 * ```
 */
export async function createTestBroker(): Promise<TestBroker> {
  const url = Deno.env.get("TEST_MQTT_URL");
  if (url) return { url, protocolVersion: 5, close: () => Promise.resolve() };
  const broker = await startEmbeddedBroker({ port: 0 });
  return { url: broker.url, protocolVersion: 4, close: broker.close };
}

/**
 * Is there a Mosquitto broker for tests that need one: the shared `TEST_MQTT_URL` broker, or
 * an installed Mosquitto to start privately (`mosquittoBroker`)?
 */
export const CAN_USE_MOSQUITTO = Deno.env.get("TEST_MQTT_URL") !== undefined || (() => {
  try {
    return Deno.statSync("/usr/sbin/mosquitto").isFile;
  } catch {
    return false;
  }
})();

/**
 * For tests that need what the embedded aedes broker does not do as Mosquitto does (send a
 * held message again with its packet id after a reconnect; carry 1 MB payloads): the shared
 * `TEST_MQTT_URL` broker (`broker` absent: the fixture's own choice), or else a private
 * Mosquitto. Guard such tests with `ignore: !CAN_USE_MOSQUITTO`.
 */
export async function mosquittoBroker(): Promise<{
  broker?: { url: string; protocolVersion: 5 };
  close(): Promise<void>;
}> {
  if (Deno.env.get("TEST_MQTT_URL") !== undefined) return { close: () => Promise.resolve() };
  const mosquitto = await startMosquitto();
  return { broker: { url: mosquitto.url, protocolVersion: 5 }, close: () => mosquitto.close() };
}

/**
 * Runs `fn` with a test broker and stops it afterwards, also when `fn` throws.
 *
 * @example
 * ```ts
 * await withTestBroker(async ({ url, protocolVersion }) => {
 *   // connect clients to url with protocolVersion
 * });
 * ```
 */
export async function withTestBroker(
  fn: (broker: { url: string; protocolVersion: 4 | 5 }) => Promise<void>,
): Promise<void> {
  const broker = await createTestBroker();
  try {
    await fn(broker);
  } finally {
    await broker.close();
  }
}

/** Returns a loopback port that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** A Mosquitto process owned by one test. */
export interface Mosquitto {
  url: string;
  port: number;
  /** The running Mosquitto's process id (null while stopped); the benchmark reads its CPU. */
  readonly pid: number | null;
  /** SIGTERM: Mosquitto saves its persistence file and exits. */
  stop(): Promise<void>;
  /** SIGKILL: state since the last autosave is lost, as in a crash. */
  kill(): Promise<void>;
  /** SIGUSR1: Mosquitto writes its persistence file now; resolves once its log says so. */
  save(): Promise<void>;
  /** Stops (if running) and starts again on the same port and persistence file. */
  restart(): Promise<void>;
  /** Stops (if running) and deletes the config and persistence files. */
  close(): Promise<void>;
}

/** Options for {@linkcode startMosquitto}. */
export interface MosquittoOptions {
  /** Keep sessions and queued messages in a file, across restarts. */
  persistence?: boolean;
  /** Extra `mosquitto.conf` lines, e.g. `max_inflight_messages 5`. */
  config?: string;
}

const MOSQUITTO = "/usr/sbin/mosquitto";
const STARTUP_TIMEOUT_MS = 5_000;

/**
 * Runs `/usr/sbin/mosquitto` on a free loopback port with a config of its own.
 *
 * @example
 * ```ts
 * const broker = await startMosquitto({ persistence: true });
 * try {
 *   await broker.restart();
 * } finally {
 *   await broker.close();
 * }
 * ```
 */
export async function startMosquitto(opts: MosquittoOptions = {}): Promise<Mosquitto> {
  const dir = await Deno.makeTempDir({ prefix: "feedline-mosquitto-" });
  const port = await freePort();
  const confPath = `${dir}/mosquitto.conf`;
  const logPath = `${dir}/mosquitto.log`;
  await Deno.writeTextFile(
    confPath,
    [
      `listener ${port} 127.0.0.1`,
      "allow_anonymous true",
      // Started as root, Mosquitto would switch to the `mosquitto` user, which
      // cannot write our temp dir; as any other user this line has no effect.
      "user root",
      `log_dest file ${logPath}`,
      ...(opts.persistence
        ? [
          "persistence true",
          `persistence_location ${dir}/`,
          "persistence_file mosquitto.db",
          "autosave_interval 1",
        ]
        : []),
      opts.config ?? "",
    ].join("\n") + "\n",
  );

  let child: Deno.ChildProcess | null = null;

  async function start(): Promise<void> {
    child = new Deno.Command(MOSQUITTO, {
      args: ["-c", confPath],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    await _waitForPort(port, child, logPath);
  }

  async function signal(sig: Deno.Signal): Promise<void> {
    if (!child) return;
    const running = child;
    child = null;
    try {
      running.kill(sig);
    } catch {
      // Already exited; its status is collected below all the same.
    }
    await running.status;
  }

  try {
    await start();
  } catch (err) {
    await Deno.remove(dir, { recursive: true });
    throw err;
  }
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    get pid() {
      return child?.pid ?? null;
    },
    stop: () => signal("SIGTERM"),
    kill: () => signal("SIGKILL"),
    async save() {
      const saves = async () =>
        (await Deno.readTextFile(logPath).catch(() => "")).split("Saving in-memory database")
          .length;
      const before = await saves();
      (child as Deno.ChildProcess | null)?.kill("SIGUSR1");
      const deadline = Date.now() + STARTUP_TIMEOUT_MS;
      while (await saves() === before) {
        if (Date.now() > deadline) throw new Error("mosquitto did not save on SIGUSR1");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    async restart() {
      await signal("SIGTERM");
      await start();
    },
    async close() {
      await signal("SIGTERM");
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Waits until `port` accepts TCP connections, or fails with Mosquitto's log. */
async function _waitForPort(
  port: number,
  child: Deno.ChildProcess,
  logPath: string,
): Promise<void> {
  let exited = false;
  child.status.then(() => {
    exited = true;
  });
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (!exited && Date.now() < deadline) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  if (!exited) {
    child.kill("SIGKILL");
    await child.status;
  }
  const log = await Deno.readTextFile(logPath).catch(() => "(no log)");
  throw new Error(
    `mosquitto did not accept connections on 127.0.0.1:${port} within ` +
      `${STARTUP_TIMEOUT_MS} ms (${exited ? "it exited" : "killed"}); its log:\n${log}`,
  );
}

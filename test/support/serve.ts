/**
 * Runs `serve` in-process for a test: against the test database and broker, on topics
 * under a prefix of its own, so tests sharing one broker never see each other's traffic.
 *
 * @module
 */
import mqtt, { type MqttClient } from "mqtt";
import {
  parseServeArgs,
  type RunningServe,
  type ServeConfig,
  type ServeHooks,
  startServe,
} from "../../commands/serve.ts";
import { type Logger, silentLogger } from "../../src/log.ts";
import { installProcessGuard } from "../../src/process_guard.ts";
import { type AuditOption, startAudited } from "./audit.ts";

/** A unique topic prefix for one test. */
export function uniquePrefix(): string {
  return `t${crypto.randomUUID().slice(0, 8)}`;
}

/** Flags that put all three topic templates under `prefix`. */
export function prefixedTopicArgs(prefix: string): string[] {
  return [
    "--feed-topic",
    `${prefix}/{user_id}/{device_code}/feeds/{feed_key}`,
    "--feeds-topic",
    `${prefix}/{user_id}/{device_code}/feeds`,
    "--status-topic",
    `${prefix}/{user_id}/{device_code}/status`,
  ];
}

/**
 * Settings every test serve gets unless the test says otherwise (in its env): most tests
 * publish for devices they never register, which serve rejects by default
 * (`unknown_device`); the test of that default sets FEEDLINE_ACCEPT_UNREGISTERED_DEVICES
 * to "off".
 */
export const TEST_DEFAULT_ENV: Record<string, string> = {
  FEEDLINE_ACCEPT_UNREGISTERED_DEVICES: "on",
  // Tests register feeds and devices as they go, and many check what stays rejected:
  // re-processing on registration is the business of the tests that turn it on.
  FEEDLINE_REPROCESS_ON_REGISTER: "off",
};

/** A running serve plus the topic helpers of its prefix. */
export interface TestServe extends RunningServe {
  prefix: string;
  feedTopic(userId: string, device: string, feed: string): string;
  feedsTopic(userId: string, device: string): string;
  statusTopic(userId: string, device: string): string;
}

/**
 * Starts serve with `databaseUrl` and `mqttUrl`, HTTP off unless asked for, a unique
 * client id and topic prefix, and `args` on top.
 */
export async function startTestServe(opts: {
  databaseUrl: string;
  mqttUrl: string;
  protocolVersion: 4 | 5;
  args?: string[];
  env?: Record<string, string>;
  prefix?: string;
  /** Where serve logs (default: nowhere); a function gets the parsed configuration. */
  log?: Logger | ((config: ServeConfig) => Logger);
  /** Replaced parts of serve (see `ServeHooks`). */
  hooks?: ServeHooks;
  /**
   * How `stop()` audits serve's books against the tables (test/support/audit.ts); default:
   * against `databaseUrl`. A test whose serve reaches the database through a proxy or a
   * pooler gives the direct URL; one that breaks the books on purpose says why it skips.
   */
  audit?: AuditOption;
}): Promise<TestServe> {
  const prefix = opts.prefix ?? uniquePrefix();
  const config = parseServeArgs([
    "--database-url",
    opts.databaseUrl,
    "--mqtt-url",
    opts.mqttUrl,
    "--mqtt-protocol",
    opts.protocolVersion === 5 ? "5" : "3.1.1",
    "--client-id",
    `feedline-test-${prefix}`,
    "--http",
    "off",
    "--db-pool-size",
    "2",
    // The shared test broker should forget our sessions soon after the test.
    "--session-expiry",
    "30",
    // A mappings file replaces the templates (and names its own topics).
    ...(opts.args?.includes("--mappings") ? [] : prefixedTopicArgs(prefix)),
    ...(opts.args ?? []),
  ], { ...TEST_DEFAULT_ENV, ...opts.env });
  const log = typeof opts.log === "function" ? opts.log(config) : opts.log;
  const running = await startAudited(
    opts.audit ?? { databaseUrl: opts.databaseUrl },
    log ?? silentLogger,
    (log) => startServe(config, log, opts.hooks),
  );
  // As `feedline serve` does (src/process_guard.ts): an error a library throws from a
  // timer (postgres.js writing to a socket a cut connection destroyed) is logged and
  // counted in feedline_uncaught_errors_total, not fatal.
  const removeGuard = installProcessGuard(log ?? silentLogger, running.metrics.uncaught);
  return {
    ...running,
    stop: async () => {
      try {
        await running.stop();
      } finally {
        removeGuard();
      }
    },
    prefix,
    feedTopic: (u, d, f) => `${prefix}/${u}/${d}/feeds/${f}`,
    feedsTopic: (u, d) => `${prefix}/${u}/${d}/feeds`,
    statusTopic: (u, d) => `${prefix}/${u}/${d}/status`,
  };
}

/** Connects a plain MQTT client (a publisher) and waits for the connection. */
export async function connectClient(
  url: string,
  protocolVersion: 4 | 5,
  options: mqtt.IClientOptions = {},
): Promise<MqttClient> {
  const client = mqtt.connect(url, { protocolVersion, reconnectPeriod: 0, ...options });
  await new Promise<void>((resolve, reject) => {
    client.once("connect", () => resolve());
    client.once("error", reject);
  });
  return client;
}

/** Publishes and waits for the broker's acknowledgement (QoS 1/2). */
export function publish(
  client: MqttClient,
  topic: string,
  payload: string | Uint8Array,
  opts: mqtt.IClientPublishOptions = { qos: 1 },
): Promise<void> {
  return new Promise((resolve, reject) => {
    client.publish(topic, payload as string, opts, (error) => error ? reject(error) : resolve());
  });
}

/** Closes a client. */
export function endClient(client: MqttClient, force = false): Promise<void> {
  return new Promise((resolve) => client.end(force, {}, () => resolve()));
}

/** Polls `check` until it returns true or `timeoutMs` passes; throws with `what` then. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** A random user id. */
export function userId(): string {
  return crypto.randomUUID();
}

/** `feedline serve` as a child process, with its JSON log lines collected. */
export interface ServeProcess {
  child: Deno.ChildProcess;
  /** Parsed JSON log lines so far. */
  logs: Record<string, unknown>[];
  /** Waits for a log line whose `msg` equals `msg`. */
  waitForLog(msg: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Sends a signal and waits for the exit code. */
  signal(sig: Deno.Signal): Promise<number>;
  /**
   * The test ended it with SIGKILL: it wrote no final line, and the books audit
   * (test/support/audit.ts) can only check that the tables hold at least what others reported.
   */
  readonly killed: boolean;
}

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/**
 * Reads a process's stdout as JSON log lines into `logs` as they come; lines that are not
 * JSON objects (`deno task` announces itself) are skipped. Resolves at the end of output.
 */
export async function collectJsonLines(
  stdout: ReadableStream<Uint8Array>,
  logs: Record<string, unknown>[],
): Promise<void> {
  let buffer = "";
  // The status page script's DOM types and Deno's disagree on TextDecoderStream.
  const decoder = new TextDecoderStream() as TransformStream<Uint8Array, string>;
  for await (const chunk of stdout.pipeThrough(decoder)) {
    buffer += chunk;
    const parts = buffer.split("\n");
    buffer = parts.pop()!;
    for (const line of parts) if (line.startsWith("{")) logs.push(JSON.parse(line));
  }
}

/** Runs `feedline ARGS` to its end (`env` added to the test's own): exit code and output. */
export async function runFeedline(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** Spawns `deno run main.ts serve ARGS` with `env`; stdout is read as JSON lines. */
export function spawnServe(args: string[], env: Record<string, string> = {}): ServeProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "serve", "--log-format", "json", ...args],
    env: { NO_COLOR: "1", MQTT_URL: "", DATABASE_URL: "", ...TEST_DEFAULT_ENV, ...env },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const logs: Record<string, unknown>[] = [];
  const reading = collectJsonLines(child.stdout, logs);
  let killed = false;
  return {
    child,
    logs,
    get killed() {
      return killed;
    },
    async waitForLog(msg, timeoutMs = 30_000) {
      await waitFor(`log "${msg}"`, () => logs.some((l) => l.msg === msg), timeoutMs);
      return logs.find((l) => l.msg === msg)!;
    },
    async signal(sig) {
      try {
        child.kill(sig);
      } catch { /* already exited */ }
      const status = await child.status;
      await reading;
      if (status.signal === "SIGKILL") killed = true;
      return status.code;
    },
  };
}

/** Is Mosquitto installed, for tests that run their own? */
export const HAVE_MOSQUITTO = (() => {
  try {
    return Deno.statSync("/usr/sbin/mosquitto").isFile;
  } catch {
    return false;
  }
})();

/**
 * Resolves once the broker has read everything `client` wrote before this call (its
 * PUBACKs included): a PINGREQ and the broker's PINGRESP. The broker reads one
 * connection in order. Instead of "let the acks reach the broker" sleeps.
 */
export function brokerHasRead(client: MqttClient): Promise<void> {
  return new Promise((resolve) => {
    const onPacket = (packet: { cmd: string }) => {
      if (packet.cmd !== "pingresp") return;
      client.off("packetreceive", onPacket);
      resolve();
    };
    client.on("packetreceive", onPacket);
    client.sendPing();
  });
}

/**
 * What a session still had for its client before now: publishes a sentinel on `topic`
 * (one the session subscribes to) from `publisher`, waits for it to arrive in
 * `received`, and returns the payloads that arrived before it. The broker delivers a
 * session's messages in order (MQTT 5 §4.6, per topic; Mosquitto keeps one queue per
 * client), so what it held comes first. Instead of "wait, then assert nothing arrived"
 * sleeps: nothing that should have arrived can be late.
 */
export async function heldBeforeSentinel(
  publisher: MqttClient,
  topic: string,
  received: { topic: string; payload: string }[],
): Promise<{ topic: string; payload: string }[]> {
  const sentinel = `sentinel-${crypto.randomUUID()}`;
  await publish(publisher, topic, sentinel, { qos: 1 });
  await waitFor("the sentinel", () => received.some((m) => m.payload === sentinel));
  return received.slice(0, received.findIndex((m) => m.payload === sentinel));
}

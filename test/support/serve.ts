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
  startServe,
} from "../../commands/serve.ts";
import { type Logger, silentLogger } from "../../src/log.ts";

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
    ...prefixedTopicArgs(prefix),
    ...(opts.args ?? []),
  ], opts.env ?? {});
  const log = typeof opts.log === "function" ? opts.log(config) : opts.log;
  const running = await startServe(config, log ?? silentLogger);
  return {
    ...running,
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

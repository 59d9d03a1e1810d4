/**
 * Connecting a publishing client (`replay --publish`, `simulate`'s helpers) with a
 * bounded wait and one error line a person can act on. The MQTT source of `serve` has
 * its own connect, because it must install its hooks before the connection exists.
 */
import mqtt, { type MqttClient } from "mqtt";
import { FeedlineError } from "../errors.ts";
import { redactUrl } from "../log.ts";

/** How to connect. */
export interface ConnectOptions {
  url: string;
  clientId: string;
  username?: string;
  password?: string;
  protocolVersion: 4 | 5;
  /** Give up after this long; default 10 s. */
  timeoutMs?: number;
}

/**
 * Connects with a clean session; rejects with BROKER_UNREACHABLE, naming the broker
 * (its password masked) and what to check, when the broker refuses or does not answer.
 */
export async function connectClient(opts: ConnectOptions): Promise<MqttClient> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const client = mqtt.connect(opts.url, {
    clientId: opts.clientId,
    username: opts.username,
    password: opts.password,
    protocolVersion: opts.protocolVersion,
    clean: true,
    reconnectPeriod: 1000,
    connectTimeout: timeoutMs,
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => onError(new Error(`no answer within ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
    const onConnect = () => {
      clearTimeout(timer);
      client.off("error", onError);
      resolve();
    };
    const onError = (error: Error) => {
      clearTimeout(timer);
      client.off("connect", onConnect);
      client.end(true);
      reject(
        new FeedlineError(
          "BROKER_UNREACHABLE",
          `cannot connect to MQTT broker ${redactUrl(opts.url)}: ${error.message}; ` +
            "check MQTT_URL (and MQTT_USERNAME/MQTT_PASSWORD) and that the broker is running",
          { cause: error },
        ),
      );
    };
    client.once("connect", onConnect);
    client.once("error", onError);
  });
  return client;
}

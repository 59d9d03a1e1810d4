/**
 * Connecting a publishing client (`replay --publish`, `simulate`'s helpers) with a
 * bounded wait and one error line a person can act on. The MQTT source of `serve` has
 * its own connect, because it must install its hooks before the connection exists.
 */
import mqtt, { type MqttClient } from "mqtt";
import { FeedlineError } from "../errors.ts";
import { redactUrl } from "../log.ts";
import {
  connectFailureLine,
  INSECURE_WARNING,
  type MqttTlsSettings,
  resolveMqttTls,
} from "./tls.ts";

/** How to connect. */
export interface ConnectOptions {
  url: string;
  clientId: string;
  username?: string;
  password?: string;
  protocolVersion: 4 | 5;
  /** Give up after this long; default 10 s. */
  timeoutMs?: number;
  /** TLS files and the opt-out (src/mqtt/tls.ts); read here, before connecting. */
  tls?: MqttTlsSettings;
  /** Where the `--mqtt-insecure` warning goes; default stderr. */
  warn?: (text: string) => void;
}

/**
 * Connects with a clean session (over TLS as `tls` says; CONFIG_INVALID for a bad TLS
 * file); rejects with BROKER_UNREACHABLE, naming the broker
 * (its password masked) and what to check, when the broker refuses or does not answer.
 */
export async function connectClient(opts: ConnectOptions): Promise<MqttClient> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const tlsSettings = opts.tls ?? {};
  const tls = await resolveMqttTls(opts.url, tlsSettings);
  if (tlsSettings.insecure) {
    (opts.warn ?? ((text) => console.error(`feedline: warning: ${text}`)))(INSECURE_WARNING);
  }
  const client = mqtt.connect(opts.url, {
    ...tls,
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
          connectFailureLine(redactUrl(opts.url), error, tlsSettings),
          { cause: error },
        ),
      );
    };
    client.once("connect", onConnect);
    client.once("error", onError);
  });
  return client;
}

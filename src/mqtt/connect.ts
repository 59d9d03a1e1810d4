/**
 * The first connect of every MQTT client feedline opens: serve's source
 * (src/mqtt/source.ts), `replay --publish` and `simulate`'s device links
 * (src/sim/device_links.ts). One bounded wait, and one error line a person can act on
 * when the broker refuses or does not answer; the client is then ended for good (no
 * reconnect behind the error). And `connectClient`, a publishing client connected so.
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

/** What the first connect waits for and says. */
export interface FirstConnectOptions {
  /** The broker, as given (its password is masked in the line). */
  url: string;
  /** Give up after this long. */
  timeoutMs: number;
  /** TLS settings, for the TLS part of the line (src/mqtt/tls.ts `explainMqttTlsError`). */
  tls?: MqttTlsSettings;
  /** Appended to the line when the failure is not about TLS. */
  hint?: string;
  /** The client was created with `manualConnect` (its hooks first): connect it now. */
  connect?: boolean;
  /** Told before the client is ended, so its owner stops reacting to its events. */
  onGiveUp?: () => void;
}

/**
 * Resolves at the client's first CONNACK. At its first error, or after `timeoutMs`, ends
 * the client (without a reconnect: MQTT.js 5.16 keeps reconnecting after `end()` while a
 * reconnect period is set) and rejects with BROKER_UNREACHABLE, naming the broker and
 * what to check.
 */
export function awaitFirstConnect(client: MqttClient, opts: FirstConnectOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onConnect = () => {
      cleanup();
      resolve();
    };
    const onError = (error: Error) => {
      cleanup();
      opts.onGiveUp?.();
      client.options.reconnectPeriod = 0;
      client.end(true);
      reject(
        new FeedlineError(
          "BROKER_UNREACHABLE",
          connectFailureLine(redactUrl(opts.url), error, opts.tls ?? {}, opts.hint),
          { cause: error },
        ),
      );
    };
    const timer = setTimeout(
      () => onError(new Error(`no answer within ${opts.timeoutMs} ms`)),
      opts.timeoutMs,
    );
    const cleanup = () => {
      clearTimeout(timer);
      client.off("connect", onConnect);
      client.off("error", onError);
    };
    client.on("connect", onConnect);
    client.on("error", onError);
    if (opts.connect) client.connect();
  });
}

/** How to connect a publishing client. */
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
 * Connects a publishing client (`replay --publish`) with a clean session, over TLS as
 * `tls` says (CONFIG_INVALID for a bad TLS file); rejects as `awaitFirstConnect` does.
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
  await awaitFirstConnect(client, { url: opts.url, timeoutMs, tls: tlsSettings });
  return client;
}

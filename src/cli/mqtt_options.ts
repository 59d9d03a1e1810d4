/**
 * The options of an MQTT client: broker URL, credentials, protocol version, keep-alive
 * and TLS. `serve` spreads this group; `replay` and `simulate` pick from it, each with
 * every TLS option (`mqttTlsOptions`).
 */
import { z } from "zod";
import { option, zs } from "./options.ts";

/**
 * TLS to the broker (mqtts://, wss://): a private CA, a client certificate, and the
 * development opt-out. Read and checked by src/mqtt/tls.ts.
 */
export const mqttTlsOptions = {
  mqttCaFile: option({
    flag: "mqtt-ca-file",
    env: "MQTT_CA_FILE",
    schema: z.string().min(1).optional(),
    defaultText: "the system's CAs",
    doc: "PEM file of the CA(s) that signed the broker's certificate (mqtts://, wss://).",
  }),
  mqttCertFile: option({
    flag: "mqtt-cert-file",
    env: "MQTT_CERT_FILE",
    schema: z.string().min(1).optional(),
    defaultText: "none",
    doc: "PEM client certificate for mutual TLS (with --mqtt-key-file).",
  }),
  mqttKeyFile: option({
    flag: "mqtt-key-file",
    env: "MQTT_KEY_FILE",
    schema: z.string().min(1).optional(),
    defaultText: "none",
    doc: "PEM private key of --mqtt-cert-file (unencrypted; keep it mode 0600).",
  }),
  mqttInsecure: option({
    flag: "mqtt-insecure",
    env: "MQTT_INSECURE",
    schema: zs.bool().default(false),
    defaultText: "off",
    doc: "Development only: do not verify the broker's certificate (a self-signed broker). " +
      "Warns at every start.",
    boolean: true,
  }),
};

/** The TLS settings of a parsed configuration, for src/mqtt/tls.ts. */
export function mqttTlsOf(config: {
  mqttCaFile?: string;
  mqttCertFile?: string;
  mqttKeyFile?: string;
  mqttInsecure: boolean;
}) {
  return {
    caFile: config.mqttCaFile,
    certFile: config.mqttCertFile,
    keyFile: config.mqttKeyFile,
    insecure: config.mqttInsecure,
  };
}

/** Broker URL, credentials, protocol and keep-alive of an MQTT client. */
export const mqttClientOptions = {
  mqttUrl: option({
    flag: "mqtt-url",
    env: "MQTT_URL",
    schema: zs.url(["mqtt:", "mqtts:", "tcp:", "ssl:", "ws:", "wss:"]).optional(),
    defaultText: "embedded broker on 127.0.0.1",
    doc: "Broker URL. Unset: an embedded MQTT 3.1.1 broker (aedes).",
    secret: "url",
  }),
  mqttUsername: option({
    flag: "mqtt-username",
    env: "MQTT_USERNAME",
    schema: z.string().optional(),
    defaultText: "none",
    doc: "Broker user name.",
  }),
  mqttPassword: option({
    flag: "mqtt-password",
    env: "MQTT_PASSWORD",
    schema: z.string().optional(),
    defaultText: "none",
    doc: "Broker password (never logged). Prefer MQTT_PASSWORD or MQTT_PASSWORD_FILE: a flag " +
      "shows in ps.",
    secret: true,
  }),
  mqttProtocol: option({
    flag: "mqtt-protocol",
    env: "MQTT_PROTOCOL",
    schema: z.enum(["5", "3.1.1"]).optional(),
    defaultText: "5 (3.1.1 for the embedded broker)",
    doc: "MQTT protocol version.",
  }),
  keepaliveSec: option({
    flag: "keepalive",
    env: "MQTT_KEEPALIVE",
    schema: zs.int(0, 65535).default(30),
    defaultText: "30",
    doc: "MQTT keep-alive in seconds.",
  }),
  ...mqttTlsOptions,
};

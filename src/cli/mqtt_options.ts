/**
 * The options of an MQTT client: broker URL, credentials, protocol version and
 * keep-alive. `simulate` uses this group; `serve` declares the same flags and is to
 * point at it too.
 */
import { z } from "zod";
import { option, zs } from "./options.ts";

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
};

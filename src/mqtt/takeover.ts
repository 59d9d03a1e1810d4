/**
 * Take-over diagnostics: two processes with one client id take the session (and its
 * backlog) from each other in turn. MQTT 5 says so (DISCONNECT reason 0x8E, §3.14.2.1);
 * a broker that does not say why it closes a connection (MQTT 3.1.1; Mosquitto before
 * 2.0.15 on MQTT 5) closes it without a DISCONNECT. Closes without a reason or a socket
 * error, again and again, are that. Without these lines the only trace was "broker
 * connection lost", once per take-over, forever.
 */
import type { MqttClient } from "mqtt";
import type { Logger } from "../log.ts";

/** MQTT 5 DISCONNECT reason "Session taken over". */
const SESSION_TAKEN_OVER = 0x8e;
/** So many closes without a reason within the window suggest a client id clash. */
const SILENT_CLOSES = 3;
const SILENT_CLOSE_WINDOW_MS = 60_000;

/**
 * Watches `client` for take-overs and logs one line that names the fix; `stopping()`
 * true: a close is ours.
 */
export function watchForTakeovers(
  client: MqttClient,
  clientId: string,
  log: Logger,
  stopping: () => boolean,
): void {
  let connectionUp = false;
  let toldWhy = false;
  let socketFailed = false;
  let silentCloses: number[] = [];
  let suspectedAt = -Infinity;
  const noteSilentClose = () => {
    const now = Date.now();
    silentCloses = silentCloses.filter((t) => now - t < SILENT_CLOSE_WINDOW_MS);
    silentCloses.push(now);
    if (silentCloses.length < SILENT_CLOSES || now - suspectedAt < SILENT_CLOSE_WINDOW_MS) return;
    suspectedAt = now;
    log.error(
      `the broker closed this connection ${silentCloses.length} times within ` +
        `${SILENT_CLOSE_WINDOW_MS / 1000} s without giving a reason: most likely another ` +
        `client uses client id "${clientId}" and the two take the session from each ` +
        "other in turn; give each serve its own --client-id (MQTT_CLIENT_ID)",
      { clientId, closes: silentCloses.length },
    );
  };

  client.on("connect", () => {
    connectionUp = true;
    toldWhy = false;
    socketFailed = false;
  });
  client.on("disconnect", (packet) => {
    toldWhy = true;
    const reasonCode = packet.reasonCode ?? 0;
    const reason = packet.properties?.reasonString;
    if (reasonCode === SESSION_TAKEN_OVER) {
      log.error(
        `another client connected with client id "${clientId}" and took over this ` +
          "session (MQTT reason 0x8E); two processes with one client id take the session " +
          "(and its backlog) from each other in turn: give each serve its own --client-id " +
          "(MQTT_CLIENT_ID)",
        { clientId, reasonCode, reason },
      );
    } else {
      log.warn("broker disconnected us", {
        clientId,
        reasonCode: `0x${reasonCode.toString(16).padStart(2, "0")}`,
        reason,
      });
    }
  });
  client.on("close", () => {
    if (stopping()) return;
    if (connectionUp && !toldWhy && !socketFailed) noteSilentClose();
    connectionUp = false;
  });
  client.on("error", () => {
    socketFailed = true;
  });
}

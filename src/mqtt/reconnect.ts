/**
 * Reconnecting with exponential backoff: MQTT.js waits `reconnectPeriod` before each
 * attempt, so each lost connection doubles it (from 0.5 s up to 30 s) and a connection
 * that comes up sets it back.
 */
import type { MqttClient } from "mqtt";

/** The first wait before a reconnect, and the longest. */
export const RECONNECT_MIN_MS = 500;
export const RECONNECT_MAX_MS = 30_000;

/** Installs the backoff on `client`; `stopping()` true: a close is ours, not a loss. */
export function reconnectWithBackoff(client: MqttClient, stopping: () => boolean): void {
  let delay = RECONNECT_MIN_MS;
  client.on("connect", () => {
    delay = RECONNECT_MIN_MS;
    client.options.reconnectPeriod = delay;
  });
  client.on("close", () => {
    if (stopping()) return;
    delay = Math.min(delay * 2, RECONNECT_MAX_MS);
    client.options.reconnectPeriod = delay;
  });
}

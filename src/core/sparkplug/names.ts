/**
 * The names Sparkplug things get in feedline's model (docs/topics-and-payloads.md,
 * "Sparkplug B"): an edge node is the device `<group>.<edge node>`, a device behind it
 * `<group>.<edge node>.<device>`, and a metric the feed `<device code>.<metric name>`,
 * with each `/` of the metric name (Sparkplug's folder separator) made a `.` and each
 * `+` or `#` a `_`, as a feed key may hold none of them. The group is part of every name:
 * edge node ids are unique only within their group.
 */
import { isValidName } from "../payload.ts";

/** The device code of an edge node (`deviceId` null) or of a device behind it. */
export function sparkplugDeviceCode(
  groupId: string,
  edgeNodeId: string,
  deviceId: string | null,
): string {
  return deviceId === null ? `${groupId}.${edgeNodeId}` : `${groupId}.${edgeNodeId}.${deviceId}`;
}

/** The feed key of metric `name` of device `deviceCode`; null when it is not a valid name. */
export function sparkplugFeedKey(deviceCode: string, name: string): string | null {
  let clean = "";
  for (let i = 0; i < name.length; i++) {
    const c = name[i];
    clean += c === "/" ? "." : c === "+" || c === "#" ? "_" : c;
  }
  const key = `${deviceCode}.${clean}`;
  return isValidName(key) ? key : null;
}

/**
 * Metrics of the protocol itself, not readings: the edge node's birth/death sequence
 * (`bdSeq`) and its control metrics (`Node Control/Rebirth`, ...) and a device's.
 */
export function isProtocolMetric(name: string): boolean {
  return name === "bdSeq" || name.startsWith("Node Control/") ||
    name.startsWith("Device Control/");
}

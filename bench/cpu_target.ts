/**
 * serve's CPU per message in the benchmark (issue 26): at QoS 1 flat out, the serve rows'
 * CPU per message against 12 µs, beside the counting subscriber's of the same run (a bare
 * MQTT.js client that only receives and acknowledges: the host's own yardstick, since the
 * same code costs 1.5× more on a slow host than on a quick one; docs/performance.md).
 */
import type { SummaryRow } from "./rows.ts";

export const SERVE_CPU_TARGET_US = 12;

/** One line per serve row of a QoS 1 flat-out run; none for other runs. */
export function cpuTargetLines(
  rows: SummaryRow[],
  qos: number,
  flatOut: boolean,
): { target: string; measured: string; result: "met" | "not met" }[] {
  if (qos !== 1 || !flatOut) return [];
  const counter = (inflight: SummaryRow["inflight"]) =>
    rows.find((r) => r.phase === "broker" && r.inflight === inflight)?.cpuUsPerMessage;
  return rows
    .filter((r) => r.phase === "serve" && r.cpuUsPerMessage !== undefined)
    .map((r) => {
      const yardstick = counter(r.inflight);
      const beside = yardstick === undefined
        ? ""
        : ` (the counting subscriber: ${yardstick.toFixed(1)})`;
      return {
        target: `serve CPU ≤ ${SERVE_CPU_TARGET_US} µs per message, QoS 1 flat out`,
        measured: `${r.name}: ${r.cpuUsPerMessage!.toFixed(1)} µs/msg${beside}`,
        result: r.cpuUsPerMessage! <= SERVE_CPU_TARGET_US ? "met" : "not met",
      };
    });
}

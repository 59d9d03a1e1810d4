/**
 * serve's CPU per message in the benchmark (issue 26): at QoS 1 flat out, the serve rows'
 * CPU per message against 12 µs, beside the counting subscriber's of the same run (a bare
 * MQTT.js client that only receives and acknowledges: the host's own yardstick, since the
 * same code costs 1.5× more on a slow host than on a quick one; docs/performance.md); and
 * the share of the broker limit issue 26 keeps from round 2.
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

/** Issue 26 keeps round 2's share of the broker: QoS 1 flat out, no in-flight cap. */
export const SERVE_SHARE_TARGET = 0.95;

/**
 * One line per serve row of a QoS 1 flat-out run on a broker without an in-flight cap that
 * has the same run's broker limit beside it: ≥ 95 % of that limit with 0 lost.
 */
export function shareTargetLines(
  rows: SummaryRow[],
  qos: number,
  flatOut: boolean,
): { target: string; measured: string; result: "met" | "not met" }[] {
  if (qos !== 1 || !flatOut) return [];
  return rows
    .filter((r) => r.phase === "serve" && r.inflight === 0 && r.ratioToBroker !== undefined)
    .map((r) => {
      const share = r.ratioToBroker! * 100;
      const lost = r.lost ?? 0;
      return {
        target: `serve ≥ ${SERVE_SHARE_TARGET * 100} % of the same-run broker limit, 0 lost, ` +
          "QoS 1 flat out, broker without in-flight cap",
        measured: `${r.name}: ${share.toFixed(1)} %, ${lost} lost`,
        result: r.ratioToBroker! >= SERVE_SHARE_TARGET && lost === 0 ? "met" : "not met",
      };
    });
}

/**
 * The shapes of the benchmark's result rows, shared by the phases that fill them and the
 * summary that prints them (a leaf: importing it makes no circle).
 */

/**
 * The broker setting a row was measured on: Mosquitto's max_inflight_messages, "unknown"
 * for a broker given with --mqtt-url, null for phases without MQTT.
 */
export type Inflight = number | "unknown" | null;

/** Load averages (1, 5, 15 minutes) around a phase: other work skews every number. */
export interface Load {
  loadBefore: number[];
  loadAfter: number[];
}

/** One row of the summary table. */
export interface SummaryRow extends Partial<Load> {
  name: string;
  /** The --phases name that produced the row. */
  phase: string;
  inflight: Inflight;
  messages: number;
  seconds?: number;
  perSecond?: number;
  /** perSecond / the broker limit measured on the same setting in the same run. */
  ratioToBroker?: number;
  p50Ms?: number;
  p99Ms?: number;
  latencyFrom?: string;
  lost?: number;
  dropped?: number;
  rejected?: number;
  mostQueued?: number;
  peakRssMb?: number;
  /** CPU µs per message of the process measured (serve, the counter, this process). */
  cpuUsPerMessage?: number;
  postgresCpuUsPerRow?: number;
  brokerCpuUsPerMessage?: number;
  publisherCpuUsPerMessage?: number;
  extra?: Record<string, unknown>;
}

/** A row with a rate: every phase but hold. */
export interface PhaseResult extends SummaryRow {
  seconds: number;
  perSecond: number;
}

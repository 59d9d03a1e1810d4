/**
 * The rows of a batch's plan (src/ingest/write/plan.ts), as the writers take them. Each
 * names its message by its index in the batch, so whatever becomes of a row (stored,
 * refused, in conflict) is told of the message that brought it.
 */
import type { RejectReason } from "../../core/message.ts";

/** A reading, as it goes into `feed_values`. */
export interface ValueRow {
  feedId: number;
  /** For a reject's detail. */
  feedKey: string;
  value: number | null;
  text: string | null;
  createdUs: number;
  receivedUs: number;
  message: number;
  /**
   * The feed has a `max_silence`: its last value is updated in place, where the silence
   * check locks it, not appended for the mover (src/ingest/write/values.ts).
   */
  watched: boolean;
}

/** A status message, as it goes into `device_status_events` (and moves `devices` forward). */
export interface StatusEvent {
  deviceId: number;
  status: string;
  /** The device's JSON details, as text, or null. */
  payload: string | null;
  atUs: number;
  message: number;
}

/** A retained status without a time of its own: it sets only a device with no status yet. */
export interface RetainedStatus {
  status: string;
  atUs: number;
}

/** A rejected message (or one of its readings), as it goes into `ingest_rejects`. */
export interface RejectRow {
  message: number;
  reason: RejectReason;
  detail: string;
}

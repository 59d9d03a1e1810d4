/**
 * Messages for tests that call the processor directly: what serve's source and intake
 * would hand it for a QoS 1 PUBLISH received now.
 *
 * @module
 */
import { nowUs } from "../../src/clock.ts";
import { decode, type DecodeOptions } from "../../src/core/decode.ts";
import type { DecodedMessage } from "../../src/core/message.ts";

/** `payload` on `topic`, QoS 1, received now, decoded with `opts`. */
export function decodedMessage(
  topic: string,
  payload: string | Uint8Array,
  opts: DecodeOptions,
  retain = false,
): DecodedMessage {
  const inbound = {
    topic,
    payload: typeof payload === "string" ? new TextEncoder().encode(payload) : payload,
    qos: 1 as const,
    retain,
    receivedAtUs: nowUs(),
  };
  return { inbound, decoded: decode(inbound, opts) };
}

/**
 * The text payload formats of mapping rules (src/core/mappings/format.ts has the
 * contract): `json` and `raw`.
 */
import { decodeUtf8, parseJson } from "../payload.ts";
import type { PayloadFormat } from "./format.ts";

/**
 * `json`: a JSON document; a payload that is not JSON at all (`online`, `ON`) is the
 * text itself, so a rule reads `{"state":"online"}` and a bare `online` alike.
 */
export const jsonFormat: PayloadFormat = {
  name: "json",
  shape: "tree",
  decode(payload, ctx) {
    const text = decodeUtf8(payload);
    if (text === null) {
      return { kind: "reject", reason: "bad_payload", detail: "payload is not UTF-8" };
    }
    const trimmed = text.trim();
    if (trimmed === "") return { kind: "reject", reason: "bad_payload", detail: "blank payload" };
    const c = trimmed[0];
    if (c !== "{" && c !== "[" && c !== '"') {
      // A scalar: JSON's (`21.5`, `true`, `null`), or else the text as it is (`ON`, `+1`).
      try {
        return { kind: "tree", tree: JSON.parse(trimmed) };
      } catch {
        return { kind: "tree", tree: trimmed };
      }
    }
    const parsed = parseJson(trimmed, ctx.limits);
    if (!parsed.ok) return { kind: "reject", reason: "bad_payload", detail: parsed.detail };
    return { kind: "tree", tree: parsed.json };
  },
};

/** `raw`: the payload is text, never parsed as JSON (`21.5`, `ON`, `Online`). */
export const rawFormat: PayloadFormat = {
  name: "raw",
  shape: "tree",
  decode(payload) {
    const text = decodeUtf8(payload);
    if (text === null) {
      return { kind: "reject", reason: "bad_payload", detail: "payload is not UTF-8" };
    }
    const trimmed = text.trim();
    if (trimmed === "") return { kind: "reject", reason: "bad_payload", detail: "blank payload" };
    return { kind: "tree", tree: trimmed };
  },
};

/**
 * `cbor`: a CBOR payload (RFC 8949), decoded into the same shapes as JSON, so a rule maps
 * it with the same `readings`, `time` and `status` (src/core/mappings/format.ts has the
 * contract; docs/topics-and-payloads.md, "CBOR").
 *
 * cborg decodes strictly: maps with keys other than text, tags, trailing bytes and
 * truncated input are refused, which here is `bad_payload`. Integers beyond 2^53 come
 * back as bigint and are read as the nearest double, as JSON numbers are; byte strings
 * are no reading. The nesting is bounded by `maxJsonDepth` like JSON's (cborg itself
 * recurses, and its failure on deeper input is a RangeError caught here).
 */
import { decode as decodeCbor } from "cborg";
import { nestingExceeds } from "../payload.ts";
import type { PayloadFormat } from "./format.ts";
import { DEFAULT_MAX_JSON_DEPTH } from "../payload.ts";

export const cborFormat: PayloadFormat = {
  name: "cbor",
  shape: "tree",
  decode(payload, ctx) {
    let tree: unknown;
    try {
      tree = decodeCbor(payload);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      return {
        kind: "reject",
        reason: "bad_payload",
        detail: `invalid CBOR: ${message.replace(/^CBOR decode error: /, "").slice(0, 80)}`,
      };
    }
    const maxDepth = ctx.limits.maxJsonDepth ?? DEFAULT_MAX_JSON_DEPTH;
    if (tree !== null && typeof tree === "object" && nestingExceeds(tree, maxDepth)) {
      return {
        kind: "reject",
        reason: "bad_payload",
        detail: `CBOR nested deeper than ${maxDepth} levels`,
      };
    }
    return { kind: "tree", tree };
  },
};

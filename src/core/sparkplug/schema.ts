/**
 * The Sparkplug B payload on the wire: a Google Protocol Buffers message whose field
 * numbers the Sparkplug B specification defines (the Eclipse Tahu `sparkplug_b.proto`,
 * see docs/topics-and-payloads.md, "Sparkplug B"). Decoded and encoded with `protobufjs`
 * (BSD-3-Clause) from the subset written here, not from a copy of that file:
 *
 * - DataSet (17), Template (18) and extension (19) values are declared as plain bytes, so
 *   protobufjs never walks into them: a template nests metrics in metrics without limit,
 *   and such values are rejected as unsupported anyway (docs/topics-and-payloads.md).
 * - Metric metadata (8) and properties (9) are not declared: protobufjs skips fields it
 *   does not know, so they cost a skip and nothing else.
 */
import protobuf from "protobufjs";

/** Sparkplug B datatype numbers (the specification's `DataType`). */
export const DATATYPES = {
  Unknown: 0,
  Int8: 1,
  Int16: 2,
  Int32: 3,
  Int64: 4,
  UInt8: 5,
  UInt16: 6,
  UInt32: 7,
  UInt64: 8,
  Float: 9,
  Double: 10,
  Boolean: 11,
  String: 12,
  DateTime: 13,
  Text: 14,
  UUID: 15,
  DataSet: 16,
  Bytes: 17,
  File: 18,
  Template: 19,
  PropertySet: 20,
  PropertySetList: 21,
} as const;

const DATATYPE_NAMES = new Map<number, string>(
  Object.entries(DATATYPES).map(([name, n]) => [n, name]),
);

/** A datatype's name for messages: `Int32`, `DataSet`, `array type 22`, `type 99`. */
export function datatypeName(n: number): string {
  return DATATYPE_NAMES.get(n) ?? (n >= 22 && n <= 34 ? `array type ${n}` : `type ${n}`);
}

// proto2, as the specification's schema is: a field set to 0, false or "" (an alias 0, a
// Boolean false) is written and read as present, not dropped as a proto3 default.
const DESCRIPTOR = {
  edition: "proto2",
  nested: {
    Payload: {
      edition: "proto2",
      fields: {
        timestamp: { type: "uint64", id: 1 },
        metrics: { rule: "repeated", type: "Metric", id: 2 },
        seq: { type: "uint64", id: 3 },
        uuid: { type: "string", id: 4 },
        body: { type: "bytes", id: 5 },
      },
    },
    Metric: {
      edition: "proto2",
      oneofs: {
        value: {
          oneof: [
            "intValue",
            "longValue",
            "floatValue",
            "doubleValue",
            "booleanValue",
            "stringValue",
            "bytesValue",
            "datasetValue",
            "templateValue",
            "extensionValue",
          ],
        },
      },
      fields: {
        name: { type: "string", id: 1 },
        alias: { type: "uint64", id: 2 },
        timestamp: { type: "uint64", id: 3 },
        datatype: { type: "uint32", id: 4 },
        isHistorical: { type: "bool", id: 5 },
        isTransient: { type: "bool", id: 6 },
        isNull: { type: "bool", id: 7 },
        intValue: { type: "uint32", id: 10 },
        longValue: { type: "uint64", id: 11 },
        floatValue: { type: "float", id: 12 },
        doubleValue: { type: "double", id: 13 },
        booleanValue: { type: "bool", id: 14 },
        stringValue: { type: "string", id: 15 },
        bytesValue: { type: "bytes", id: 16 },
        datasetValue: { type: "bytes", id: 17 },
        templateValue: { type: "bytes", id: 18 },
        extensionValue: { type: "bytes", id: 19 },
      },
    },
  },
};
// protobufjs reads `edition` (its typings do not list it yet).
const root = protobuf.Root.fromJSON(DESCRIPTOR as protobuf.INamespace);

const PayloadType = root.lookupType("Payload");

/** A 64-bit unsigned field as protobufjs gives it: a `Long` (or a number, for small ones). */
export type WireLong = number | { low: number; high: number; unsigned?: boolean };

/** One metric as it came off the wire; a field is present when it is an own property. */
export interface WireMetric {
  name?: string;
  alias?: WireLong;
  timestamp?: WireLong;
  datatype?: number;
  isHistorical?: boolean;
  isTransient?: boolean;
  isNull?: boolean;
  intValue?: number;
  longValue?: WireLong;
  floatValue?: number;
  doubleValue?: number;
  booleanValue?: boolean;
  stringValue?: string;
  bytesValue?: Uint8Array;
  datasetValue?: Uint8Array;
  templateValue?: Uint8Array;
  extensionValue?: Uint8Array;
}

/** A payload as it came off the wire. */
export interface WirePayload {
  timestamp?: WireLong;
  metrics?: WireMetric[];
  seq?: WireLong;
  uuid?: string;
  body?: Uint8Array;
}

/** Decodes payload bytes; throws on bytes that are not such a message (the caller guards). */
export function decodeWire(bytes: Uint8Array): WirePayload {
  return PayloadType.decode(bytes) as unknown as WirePayload;
}

/** Encodes a payload (simulate, the rebirth command, tests); numbers for 64-bit fields. */
export function encodeWire(payload: WirePayload): Uint8Array {
  const bytes = PayloadType.encode(PayloadType.fromObject(payload as Record<string, unknown>))
    .finish();
  // A plain Uint8Array (protobufjs gives a Buffer under Node), as an Inbound's payload is.
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** An unsigned 64-bit field as a number (exact up to 2^53); null when absent. */
export function unsignedOf(v: WireLong | undefined): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v === "number") return v;
  return (v.high >>> 0) * 0x1_0000_0000 + (v.low >>> 0);
}

/** A 64-bit field read as two's complement (Int64). */
export function signedOf(v: WireLong): number {
  if (typeof v === "number") return v;
  return (v.high | 0) * 0x1_0000_0000 + (v.low >>> 0);
}

/**
 * Hostile MQTT traffic for the property tests of issue 10 ("no single message may stop
 * ingest"): fast-check arbitraries of compact message *descriptions* (a 64 KB random
 * level is `{ rnd: seed, n: 65536 }`, a 30,000-deep payload is `{ deep: 30000, ... }`),
 * turned into real topics and bytes by `materialize()`. Descriptions keep a failing
 * case readable when fast-check prints it, and shrink well.
 *
 * Known-valid messages for the same fleet come from `validMessage()`: their device
 * timestamps lie in 2001 (`VALID_TS_BASE_US` on), a year the hostile generators never
 * produce as a valid time, so a hostile message cannot collide with (and absorb) one.
 *
 * @module
 */
import fc from "fast-check";
import { createRng } from "../../src/sim/prng.ts";

/** The seed of every property: `FEEDLINE_PROPERTY_SEED`, or a fixed default. */
export const PROPERTY_SEED: number = (() => {
  const text = Deno.env.get("FEEDLINE_PROPERTY_SEED");
  if (text === undefined || text.trim() === "") return 1010;
  const seed = Number(text);
  if (!Number.isSafeInteger(seed)) {
    throw new Error(`FEEDLINE_PROPERTY_SEED must be an integer, not "${text}"`);
  }
  return seed | 0;
})();

/**
 * `fc.assert` with the property seed; on failure the error names the seed (and how to
 * run with it again) before fast-check's own report (counterexample, path).
 */
export async function assertProperty<T>(
  property: fc.IAsyncProperty<T> | fc.IProperty<T>,
  params: fc.Parameters<T> = {},
): Promise<void> {
  try {
    await fc.assert(property, { seed: PROPERTY_SEED, ...params });
  } catch (error) {
    // fast-check's report, with a whole batch as the counterexample, can run to
    // megabytes: keep the start of each long line (seed and path reproduce it exactly),
    // then what the property said went wrong.
    const report = (error as Error).message.split("\n").map((line) =>
      line.length > 4000 ? `${line.slice(0, 4000)} … (${line.length - 4000} more characters)` : line
    ).join("\n");
    const cause = (error as { cause?: unknown }).cause;
    throw new Error(
      `property failed with seed ${PROPERTY_SEED} ` +
        `(run again with FEEDLINE_PROPERTY_SEED=${PROPERTY_SEED})\n${report}` +
        (cause instanceof Error ? `\nThe property said: ${cause.message}` : ""),
    );
  }
}

// ---------------------------------------------------------------------------------
// Descriptions

/** One topic level (or any piece of text). */
export type Level =
  /** Short text as generated. */
  | { lit: string }
  /** `unit` repeated `n` times: long and compressible. */
  | { rep: string; n: number }
  /**
   * `n` characters from a seeded PRNG: long and not compressible. `key`: printable ASCII
   * without `/ + #` (a valid-looking feed key or device code); `unicode`: any code point
   * but surrogates; `utf16`: any UTF-16 code unit, lone surrogates and NUL included.
   */
  | { rnd: number; n: number; alphabet: "key" | "unicode" | "utf16" };

/** Whose user id a topic carries. */
export type UserRef = "real" | "REAL" | "ghost" | "GHOST" | Level;
/** A registered name (device `d1`, feeds `temp`, `hum`, `off`) or any level. */
export type NameRef = string | Level;

/** The topic of a message (without serve's test prefix). */
export type TopicDesc =
  | { feed: [UserRef, NameRef, NameRef] }
  | { feeds: [UserRef, NameRef] }
  | { status: [UserRef, NameRef] }
  /** Any levels joined with `/`: empty levels, `+`, `#`, wrong shapes. */
  | { levels: Level[] }
  /** `n` copies of one short level: very many levels. */
  | { many: Level; n: number };

/** Where a deeply nested value sits in the payload. */
export type DeepShape =
  | "bare"
  | "feed-value"
  | "feed-ts"
  | "bulk-key"
  | "status-word"
  | "status-details";

/** The payload of a message. */
export type PayloadDesc =
  /** Raw bytes, invalid UTF-8 included. */
  | { bytes: Uint8Array }
  /** Any text, UTF-8 encoded (a lone surrogate becomes U+FFFD on the wire). */
  | { text: string }
  /** `JSON.stringify(json)`: keys and strings may hold NUL and lone surrogates (escaped). */
  | { json: unknown }
  /** Arrays or objects nested `depth` deep at `shape`. */
  | { deep: number; shape: DeepShape; object: boolean }
  /** No bytes at all. */
  | { empty: true };

/** One generated message. */
export interface MessageDesc {
  topic: TopicDesc;
  payload: PayloadDesc;
  retain: boolean;
  qos: 0 | 1 | 2;
}

/** The registered fleet messages are aimed at. */
export interface Fleet {
  /** Registered user id (lower case). */
  user: string;
}

/** A user id that is a valid UUID but registered nowhere. */
export const GHOST_USER = "0badf00d-dead-4bee-8f00-0123456789ab";

/** What the wire carries. */
export interface Materialized {
  topic: string;
  payload: Uint8Array;
  retain: boolean;
  qos: 0 | 1 | 2;
}

// ---------------------------------------------------------------------------------
// Arbitraries

/** Any UTF-16 code unit: lone surrogates, NUL and control characters included. */
const codeUnit = fc.nat(0xffff).map((c) => String.fromCharCode(c));

const SPECIAL_TEXT = [
  "",
  "+",
  "#",
  "/",
  "$SYS",
  "\u0000",
  "\ud800",
  "\udfff",
  "\ud83d",
  "\u007f",
  "\u009f",
  "\ufeff",
  "\ufffe",
  "\uffff",
  " ",
  "temp ",
  "TEMP",
  "d1\u0000",
  "..",
  "%00",
  "__proto__",
  "constructor",
  "toString",
  "x'); drop table feeds; --",
  "\\",
  '"',
  "😀",
  "e\u0301",
];

/** Short text of every kind. */
export const shortText: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.constantFrom(...SPECIAL_TEXT), weight: 3 },
  { arbitrary: fc.string({ unit: codeUnit, maxLength: 12 }), weight: 3 },
  { arbitrary: fc.string({ unit: "binary", maxLength: 12 }), weight: 2 },
  { arbitrary: fc.string({ maxLength: 12 }), weight: 2 },
);

/** Lengths with the boundaries that matter (128-character names, 2.7 KB index rows, 64 KB). */
const longLength = fc.oneof(
  fc.constantFrom(128, 129, 256, 1000, 2000, 2700, 2712, 2713, 4096, 8192, 65535, 65536),
  fc.integer({ min: 129, max: 65536 }),
);

/** A topic level. */
export const level: fc.Arbitrary<Level> = fc.oneof(
  { arbitrary: shortText.map((lit) => ({ lit })), weight: 6 },
  {
    arbitrary: fc.record({
      rep: fc.constantFrom("x", "é", "😀", "\u0000", "\ud800", " ", "+", "/"),
      n: longLength,
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      rnd: fc.nat(),
      n: longLength,
      alphabet: fc.constantFrom("key" as const, "unicode" as const, "utf16" as const),
    }),
    weight: 2,
  },
);

const userRef: fc.Arbitrary<UserRef> = fc.oneof(
  { arbitrary: fc.constantFrom<UserRef>("real", "REAL"), weight: 6 },
  { arbitrary: fc.constantFrom<UserRef>("ghost", "GHOST"), weight: 1 },
  { arbitrary: level, weight: 1 },
);
const deviceRef: fc.Arbitrary<NameRef> = fc.oneof(
  { arbitrary: fc.constant("d1"), weight: 4 },
  { arbitrary: fc.constantFrom("d2", "D1", "ghost"), weight: 1 },
  { arbitrary: level, weight: 2 },
);
const feedRef: fc.Arbitrary<NameRef> = fc.oneof(
  { arbitrary: fc.constantFrom("temp", "hum", "off"), weight: 5 },
  { arbitrary: fc.constantFrom("nope", "Temp"), weight: 1 },
  { arbitrary: level, weight: 2 },
);

/** A topic: mostly the three routed shapes, with any user, device and feed in them. */
export const topic: fc.Arbitrary<TopicDesc> = fc.oneof(
  { arbitrary: fc.tuple(userRef, deviceRef, feedRef).map((feed) => ({ feed })), weight: 6 },
  { arbitrary: fc.tuple(userRef, deviceRef).map((feeds) => ({ feeds })), weight: 3 },
  { arbitrary: fc.tuple(userRef, deviceRef).map((status) => ({ status })), weight: 3 },
  { arbitrary: fc.array(level, { maxLength: 8 }).map((levels) => ({ levels })), weight: 1 },
  {
    arbitrary: fc.record({
      many: shortText.map((lit): Level => ({ lit })),
      n: fc.integer({ min: 2, max: 20_000 }),
    }),
    weight: 1,
  },
);

// Numbers and timestamps ------------------------------------------------------------

const EDGE_NUMBERS = [
  0,
  -0,
  1,
  -1,
  5e-324,
  1e300,
  -1e300,
  1.7976931348623157e308,
  1e19,
  -1e19,
  1e16,
  8.64e15,
  8.64e15 + 1,
  8.64e18,
  9.2233720368547758e18,
  1e14,
  1e14 - 1,
  1e11,
  1e11 - 1,
  946684800,
  946684799,
  Number.MAX_SAFE_INTEGER,
  2 ** 53 + 2,
  0.1,
];

/**
 * Names `Object.prototype` holds (issue 20): a payload's key of that name must read as
 * data, and an object holding them must never reach `String()`, a template string or a
 * comparison (`{"toString": 1}` made those throw "Cannot convert object to primitive
 * value").
 */
export const PROTO_NAMES = [
  "toString",
  "valueOf",
  "constructor",
  "__proto__",
  "hasOwnProperty",
  "toJSON",
  "isPrototypeOf",
  "propertyIsEnumerable",
  "toLocaleString",
] as const;

const protoLeaf: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer(),
  fc.constantFrom(null, true, "online", "temp", 1767225600, "2026-01-01T00:00:00Z"),
  fc.constant([]),
);

/** An object of 1 to 3 prototype names (own keys, `__proto__` too) to `inner` values. */
function protoObjectOf(inner: fc.Arbitrary<unknown>): fc.Arbitrary<Record<string, unknown>> {
  return fc.array(fc.tuple(fc.constantFrom(...PROTO_NAMES), inner), { minLength: 1, maxLength: 3 })
    // fromEntries defines own properties: a "__proto__" key stays a key.
    .map((entries) => Object.fromEntries(entries));
}

const proto0 = protoObjectOf(protoLeaf);
const proto1 = protoObjectOf(fc.oneof(protoLeaf, proto0, proto0.map((o) => [o])));

/** Objects keyed by prototype names, their values such objects again, nested 1 to 3 deep. */
export const protoObject: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  proto0,
  proto1,
  protoObjectOf(fc.oneof(protoLeaf, proto1)),
);

/** JSON numbers across ±1e300 (NaN and ±Infinity become `null` in JSON). */
export const number: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(...EDGE_NUMBERS),
  fc.double(),
  fc.integer(),
  fc.double({ min: -1e300, max: 1e300, noNaN: true }),
);

// Seconds from 2002 on: valid-looking times outside the 2001 window of valid messages.
const FROM_2002_S = Date.UTC(2002, 0, 1) / 1000;
const NOW_S = Math.floor(Date.now() / 1000);
const pad = (n: number, width: number) => String(n).padStart(width, "0");

/** ISO-8601-looking text: impossible dates, date-only, odd zones and fractions. */
export const isoText: fc.Arbitrary<string> = fc.record({
  year: fc.oneof(fc.integer({ min: 2002, max: 2030 }), fc.integer({ min: 0, max: 9999 })),
  month: fc.oneof(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 99 })),
  day: fc.oneof(fc.integer({ min: 1, max: 28 }), fc.integer({ min: 0, max: 99 })),
  hour: fc.integer({ min: 0, max: 29 }),
  minute: fc.integer({ min: 0, max: 69 }),
  second: fc.option(fc.integer({ min: 0, max: 69 })),
  fraction: fc.option(fc.stringMatching(/^[0-9]{1,12}$/)),
  zone: fc.constantFrom("", "Z", "z", "+00:00", "+14:00", "-12:00", "+0530", "+99:99", "-00"),
  sep: fc.constantFrom("T", " ", "t"),
  dateOnly: fc.boolean(),
}).map((p) => {
  // Keep valid-looking times out of 2001, the valid messages' year.
  const year = p.year === 2001 ? 2002 : p.year;
  const date = `${pad(year, 4)}-${pad(p.month, 2)}-${pad(p.day, 2)}`;
  if (p.dateOnly) return date;
  const sec = p.second === null ? "" : `:${pad(p.second, 2)}`;
  const frac = p.fraction === null ? "" : `.${p.fraction}`;
  return `${date}${p.sep}${pad(p.hour, 2)}:${pad(p.minute, 2)}${sec}${frac}${p.zone}`;
});

const IMPOSSIBLE_DATES = [
  "2026-02-30T00:00:00Z",
  "2026-02-29T00:00:00Z",
  "2026-04-31T12:00:00Z",
  "2026-02-30",
  "2026-01-01",
  "2026-13-01T00:00:00Z",
  "2026-00-10T00:00:00Z",
  "2026-01-01T24:00:00Z",
  "2026-01-01T23:60:00Z",
  "+275760-09-13T00:00:00.000Z",
  "-271821-04-20T00:00:00.000Z",
  "9999-12-31T23:59:59.999999999Z",
];

/** A device timestamp: numbers, numeric text, ISO text, impossible dates, junk. */
export const timestamp: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: number, weight: 3 },
  {
    arbitrary: fc.oneof(
      fc.integer({ min: FROM_2002_S, max: NOW_S }),
      fc.integer({ min: FROM_2002_S * 1000, max: NOW_S * 1000 }),
      fc.integer({ min: FROM_2002_S * 1e6, max: NOW_S * 1e6 }),
    ),
    weight: 3,
  },
  { arbitrary: number.map((n) => String(n)), weight: 2 },
  {
    arbitrary: fc.constantFrom("1e19", " 1e19 ", "-1e19", "1e300", "1e999", "-0", "0x10", "NaN"),
    weight: 1,
  },
  { arbitrary: isoText, weight: 3 },
  { arbitrary: fc.constantFrom(...IMPOSSIBLE_DATES), weight: 2 },
  { arbitrary: fc.oneof(shortText, fc.boolean(), fc.constant(null), fc.constant({})), weight: 1 },
  { arbitrary: protoObject, weight: 1 },
);

/** A feed value: numbers, numeric and other text, booleans, null, arrays, objects. */
export const value: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: number, weight: 4 },
  { arbitrary: fc.integer({ min: -20, max: 120 }), weight: 2 },
  {
    arbitrary: fc.constantFrom("ON", "open", "1e999", "NaN", "-Infinity", " 42 ", "0x1F"),
    weight: 1,
  },
  { arbitrary: shortText, weight: 2 },
  {
    arbitrary: fc.record({ ch: fc.constantFrom("x", "é", "\u0000"), n: fc.nat(400) }).map((r) =>
      r.ch.repeat(r.n)
    ),
    weight: 1,
  },
  {
    arbitrary: fc.oneof(fc.boolean(), fc.constant(null), fc.constant([1]), fc.constant({})),
    weight: 1,
  },
  { arbitrary: protoObject, weight: 1 },
);

/** Object keys: registered feed names, odd ones, NUL and lone surrogates. */
const key: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.constantFrom("temp", "hum", "off", "value", "ts", "status"), weight: 3 },
  { arbitrary: fc.constantFrom(...PROTO_NAMES), weight: 2 },
  { arbitrary: shortText, weight: 3 },
  { arbitrary: fc.constant("k".repeat(129)), weight: 1 },
);

const reading = fc.record(
  { value, ts: timestamp, timestamp, extra: fc.tuple(key, value) },
  { requiredKeys: ["value"] },
).map(({ extra, ...r }) => (extra ? { ...r, [extra[0]]: extra[1] } : r));

const bulkObject = fc.array(
  fc.tuple(key, fc.oneof(value, reading)),
  { maxLength: 8 },
).map((entries) => Object.fromEntries(entries));

const bulkArray = fc.array(
  fc.oneof(
    { arbitrary: fc.tuple(key, reading).map(([feed, r]) => ({ feed, ...r })), weight: 4 },
    { arbitrary: fc.tuple(key, reading).map(([k, r]) => ({ key: k, ...r })), weight: 1 },
    // A feed name that is no name: an object keyed by prototype names.
    {
      arbitrary: fc.tuple(protoObject, reading, fc.boolean()).map(([o, r, asKey]) =>
        asKey ? { key: o, ...r } : { feed: o, ...r }
      ),
      weight: 1,
    },
    { arbitrary: fc.oneof(value, fc.constant([]), fc.constant(null)), weight: 1 },
  ),
  { maxLength: 8 },
);

const statusWord = fc.oneof(
  fc.constantFrom("online", "offline", "ONLINE", " Offline ", "onl\u0000ine", "sleeping", ""),
  shortText,
);

const statusObject = fc.record(
  {
    status: fc.oneof(statusWord, value),
    ts: timestamp,
    odd: fc.dictionary(key, fc.oneof(value, shortText), { maxKeys: 4 }),
    nul: fc.constantFrom("\u0000", "a\u0000b", "\ud800", "\udc00x", "\u0000\ud800"),
  },
  { requiredKeys: ["status"] },
).map(({ odd, nul, ...s }) => ({ ...s, ...odd, ...(nul === undefined ? {} : { [nul]: nul }) }));

/** A payload. */
export const payload: fc.Arbitrary<PayloadDesc> = fc.oneof(
  { arbitrary: protoObject.map((json) => ({ json })), weight: 1 },
  { arbitrary: fc.uint8Array({ maxLength: 64 }).map((bytes) => ({ bytes })), weight: 2 },
  {
    arbitrary: fc.oneof(
      fc.constantFrom(
        "online",
        "offline",
        "42",
        "1e999",
        "NaN",
        "ON",
        "\u0000",
        "[]",
        "{}",
        "null",
        '"\\ud800"',
      ),
      fc.string({ unit: codeUnit, maxLength: 40 }),
    ).map((text) => ({ text })),
    weight: 2,
  },
  { arbitrary: value.map((json) => ({ json })), weight: 2 },
  { arbitrary: reading.map((json) => ({ json })), weight: 5 },
  { arbitrary: bulkObject.map((json) => ({ json })), weight: 3 },
  { arbitrary: bulkArray.map((json) => ({ json })), weight: 3 },
  { arbitrary: statusObject.map((json) => ({ json })), weight: 4 },
  {
    arbitrary: fc.record({
      deep: fc.oneof(
        fc.constantFrom(30_000, 10_000, 5_000, 1_000),
        fc.integer({ min: 1, max: 30_000 }),
      ),
      shape: fc.constantFrom<DeepShape>(
        "bare",
        "feed-value",
        "feed-ts",
        "bulk-key",
        "status-word",
        "status-details",
      ),
      object: fc.boolean(),
    }),
    weight: 2,
  },
  { arbitrary: fc.constant({ empty: true as const }), weight: 1 },
);

/** A hostile message. */
export const message: fc.Arbitrary<MessageDesc> = fc.record({
  topic,
  payload,
  retain: fc.boolean(),
  qos: fc.constantFrom<0 | 1 | 2>(0, 1, 2),
});

// ---------------------------------------------------------------------------------
// Materialization

const enc = new TextEncoder();

function randomText(seed: number, n: number, alphabet: "key" | "unicode" | "utf16"): string {
  const rng = createRng(seed);
  // UTF-16 code units, turned into a string a chunk at a time (fast for 64 KB levels).
  const units = new Uint16Array(alphabet === "unicode" ? 2 * n : n);
  let u = 0;
  for (let i = 0; i < n; i++) {
    if (alphabet === "key") {
      const c = 0x21 + rng.int(0x5e); // ! .. ~
      units[u++] = c === 0x2f || c === 0x2b || c === 0x23 ? 0x5f : c; // `/ + #` → `_`
    } else if (alphabet === "utf16") {
      units[u++] = rng.int(0x10000);
    } else {
      let cp = 0x20 + rng.int(0x10ffff - 0x20 - 0x800);
      if (cp >= 0xd800) cp += 0x800; // skip the surrogates
      if (cp < 0x10000) {
        units[u++] = cp;
      } else {
        units[u++] = 0xd800 + ((cp - 0x10000) >> 10);
        units[u++] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
      }
    }
  }
  let out = "";
  for (let i = 0; i < u; i += 8192) {
    out += String.fromCharCode(...units.subarray(i, Math.min(i + 8192, u)));
  }
  return out;
}

/** The text of a level. */
export function levelText(l: Level): string {
  if ("lit" in l) return l.lit;
  if ("rep" in l) return l.rep.repeat(l.n);
  return randomText(l.rnd, l.n, l.alphabet);
}

function userText(u: UserRef, fleet: Fleet): string {
  if (u === "real") return fleet.user;
  if (u === "REAL") return fleet.user.toUpperCase();
  if (u === "ghost") return GHOST_USER;
  if (u === "GHOST") return GHOST_USER.toUpperCase();
  return levelText(u);
}

function nameText(n: NameRef): string {
  return typeof n === "string" ? n : levelText(n);
}

/** The topic a description stands for. */
export function topicText(t: TopicDesc, fleet: Fleet): string {
  if ("feed" in t) {
    return `${userText(t.feed[0], fleet)}/${nameText(t.feed[1])}/feeds/${nameText(t.feed[2])}`;
  }
  if ("feeds" in t) return `${userText(t.feeds[0], fleet)}/${nameText(t.feeds[1])}/feeds`;
  if ("status" in t) return `${userText(t.status[0], fleet)}/${nameText(t.status[1])}/status`;
  if ("levels" in t) return t.levels.map(levelText).join("/");
  return new Array<string>(t.n).fill(levelText(t.many)).join("/");
}

function nested(depth: number, object: boolean, inner = "1"): string {
  return object
    ? '{"a":'.repeat(depth) + inner + "}".repeat(depth)
    : "[".repeat(depth) + inner + "]".repeat(depth);
}

/** The payload text of a deep description. */
function deepText(d: { deep: number; shape: DeepShape; object: boolean }): string {
  const deep = nested(d.deep, d.object);
  switch (d.shape) {
    case "bare":
      return deep;
    case "feed-value":
      return `{"value":${deep}}`;
    case "feed-ts":
      return `{"value":1,"ts":${deep}}`;
    case "bulk-key":
      return `[{"feed":${deep},"value":1}]`;
    case "status-word":
      return `{"status":${deep}}`;
    case "status-details":
      return `{"status":"online","details":${deep}}`;
  }
}

/** The payload bytes a description stands for. */
export function payloadBytes(p: PayloadDesc): Uint8Array {
  if ("bytes" in p) return p.bytes;
  if ("text" in p) return enc.encode(p.text);
  if ("json" in p) return enc.encode(JSON.stringify(p.json) ?? "undefined");
  if ("deep" in p) return enc.encode(deepText(p));
  return new Uint8Array(0);
}

/** A message as the wire carries it. */
export function materialize(m: MessageDesc, fleet: Fleet): Materialized {
  return {
    topic: topicText(m.topic, fleet),
    payload: payloadBytes(m.payload),
    retain: m.retain,
    qos: m.qos,
  };
}

// Mosquitto refuses these in a topic (MQTT 5 §1.5.4 and its own checks): control
// characters, surrogates (not UTF-8 at all), non-characters; `+` and `#` only belong in
// subscriptions.
// deno-lint-ignore no-control-regex
const UNPUBLISHABLE = /[\u0000-\u001f\u007f-\u009f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff+#]/g;
const MAX_TOPIC_BYTES = 65_535;
// Mosquitto drops a client that publishes to a topic of more levels than this.
const MAX_TOPIC_LEVELS = 200;

/**
 * The topic made publishable through Mosquitto: cut to 200 levels, refused characters
 * become `_` (supplementary non-characters U+xFFFE/U+xFFFF too), and cut to 65,535 UTF-8
 * bytes.
 */
export function publishableTopic(topicText: string): string {
  let t = topicText.split("/").slice(0, MAX_TOPIC_LEVELS).join("/").replace(UNPUBLISHABLE, "_");
  // Supplementary-plane non-characters (U+1FFFE, ...) as surrogate pairs were cut above
  // only when lone; whole pairs survive, so check code points.
  t = Array.from(t, (ch) => {
    const cp = ch.codePointAt(0)!;
    return (cp & 0xfffe) === 0xfffe ? "_" : ch;
  }).join("");
  let bytes = enc.encode(t);
  if (bytes.length <= MAX_TOPIC_BYTES) return t;
  // Cut on a character boundary.
  let end = t.length;
  while (bytes.length > MAX_TOPIC_BYTES) {
    end = Math.floor(end * 0.9);
    bytes = enc.encode(t.slice(0, end));
  }
  while (end < t.length && enc.encode(t.slice(0, end + 1)).length <= MAX_TOPIC_BYTES) end++;
  if (/[\ud800-\udbff]$/.test(t.slice(0, end))) end--;
  return t.slice(0, end);
}

// ---------------------------------------------------------------------------------
// Valid messages

/** First device time of valid messages: 2001-01-01, then one second apart. */
export const VALID_TS_BASE_US = Date.UTC(2001, 0, 1) * 1000;

/** A known-valid message and what it must leave in the database. */
export interface ValidMessage extends Materialized {
  /** Rows it must leave in feed_values: feed key, device time (µs), value. */
  readings: { feed: "temp" | "hum"; tsUs: number; value: number }[];
  /** The status event it must leave for device d1, or null. */
  status: { status: "online" | "offline"; atUs: number } | null;
}

/** How a valid message is written: one of each form the docs accept. */
export const validForm = fc.record({
  form: fc.constantFrom(
    "feed-json-s",
    "feed-json-ms",
    "feed-json-us",
    "feed-json-iso",
    "feed-json-iso-offset",
    "feed-ts-text",
    "bulk-object",
    "bulk-array",
    "status-json",
  ),
  upper: fc.boolean(),
  temp: fc.double({ noNaN: true, noDefaultInfinity: true }),
  hum: fc.double({ min: 0, max: 100, noNaN: true }),
  online: fc.boolean(),
});

/** A drawn `validForm`. */
export type ValidForm = typeof validForm extends fc.Arbitrary<infer T> ? T : never;

/**
 * Builds valid message number `n` of a run (each `n` once per database): its device
 * times are `VALID_TS_BASE_US + n * 2 s` and `+ 1 s`, unique among all messages.
 */
export function validMessage(n: number, f: ValidForm, fleet: Fleet): ValidMessage {
  const t1 = VALID_TS_BASE_US + n * 2_000_000;
  const t2 = t1 + 1_000_000;
  const user = f.upper ? fleet.user.toUpperCase() : fleet.user;
  const temp = Object.is(f.temp, -0) ? 0 : f.temp;
  const hum = Object.is(f.hum, -0) ? 0 : f.hum;
  const single = (ts: unknown): ValidMessage => ({
    topic: `${user}/d1/feeds/temp`,
    payload: enc.encode(JSON.stringify({ value: temp, ts })),
    retain: false,
    qos: 1,
    readings: [{ feed: "temp", tsUs: t1, value: temp }],
    status: null,
  });
  switch (f.form) {
    case "feed-json-s":
      return single(t1 / 1e6);
    case "feed-json-ms":
      return single(t1 / 1e3);
    case "feed-json-us":
      return single(t1);
    case "feed-json-iso":
      return single(new Date(t1 / 1000).toISOString());
    case "feed-json-iso-offset": {
      const local = new Date(t1 / 1000 + 2 * 3_600_000).toISOString().slice(0, 19);
      return single(`${local}+02:00`);
    }
    case "feed-ts-text":
      return single(String(t1 / 1e6));
    case "bulk-object":
      return {
        topic: `${user}/d1/feeds`,
        payload: enc.encode(
          JSON.stringify({
            temp: { value: temp, ts: t1 / 1e6 },
            hum: { value: hum, ts: t2 / 1e6 },
          }),
        ),
        retain: false,
        qos: 1,
        readings: [{ feed: "temp", tsUs: t1, value: temp }, { feed: "hum", tsUs: t2, value: hum }],
        status: null,
      };
    case "bulk-array":
      return {
        topic: `${user}/d1/feeds`,
        payload: enc.encode(JSON.stringify([
          { feed: "temp", value: temp, ts: t1 / 1e3 },
          { feed: "hum", value: hum, ts: new Date(t2 / 1000).toISOString() },
        ])),
        retain: false,
        qos: 1,
        readings: [{ feed: "temp", tsUs: t1, value: temp }, { feed: "hum", tsUs: t2, value: hum }],
        status: null,
      };
    default: {
      const status = f.online ? "online" as const : "offline" as const;
      return {
        topic: `${user}/d1/status`,
        payload: enc.encode(JSON.stringify({ status, ts: t1 / 1e6, rssi: -60 })),
        retain: false,
        qos: 1,
        readings: [],
        status: { status, atUs: t1 },
      };
    }
  }
}

import assert from "node:assert/strict";
import { halfSipHashBytes, KeyedHash } from "./keyed_hash.ts";

// The reference's test vectors (github.com/veorq/SipHash, vectors.h, vectors_hsip64): key
// bytes 00 … 07, input bytes 00 … n-1 for n = 0, 1, 2, …; each 8 bytes, little-endian words.
const HSIP64 = [
  "218d1f59b9b83cc8",
  "be552412f8387315",
  "064f39ef7c50eb57",
  "ce0f1a45f7060679",
  "d5e78a175be52ea1",
  "cb9d7c3f2f3db580",
  "ce3e91358aa2bc25",
];
const REFERENCE_KEY: [number, number] = [0x03020100, 0x07060504];

function wordsOf(hex: string): number[] {
  const bytes = hex.match(/../g)!.map((h) => parseInt(h, 16));
  return [0, 4].map((at) =>
    (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) >>> 0
  );
}

Deno.test("HalfSipHash-2-4 gives the reference's 64-bit test vectors", () => {
  HSIP64.forEach((hex, n) => {
    const input = Uint8Array.from({ length: n }, (_, i) => i);
    assert.deepEqual(
      halfSipHashBytes(REFERENCE_KEY, input, { c: 2, d: 4 }, 2),
      wordsOf(hex),
      `n=${n}`,
    );
  });
});

/** The bytes `hashPair(a, b)` hashes: a's UTF-16 units, a's length as two units, b's units. */
function pairBytes(a: string, b: string): Uint8Array {
  const unitsOf = (s: string) => Array.from({ length: s.length }, (_, i) => s.charCodeAt(i));
  const units = [...unitsOf(a), a.length & 0xffff, a.length >>> 16, ...unitsOf(b)];
  const bytes = new Uint8Array(units.length * 2);
  units.forEach((u, i) => {
    bytes[2 * i] = u & 0xff;
    bytes[2 * i + 1] = u >>> 8;
  });
  return bytes;
}

function hashOf(hash: KeyedHash, a: string, b: string): number[] {
  const out = new Uint32Array(6);
  hash.hashPair(a, b, out, 1);
  assert.equal(out[0], 0);
  assert.equal(out[5], 0, "writes exactly four words at `at`");
  return [...out.subarray(1, 5)];
}

Deno.test("hashPair is HalfSipHash-1-3 with 128 bits out, over the pair's code units", () => {
  const key = new Uint32Array([0x03020100, 0x07060504]);
  const hash = new KeyedHash(key);
  const pairs: [string, string][] = [
    ["", ""],
    ["a", ""],
    ["", "b"],
    ["0b0a3c1e-4a4e-4f7a-9c55-0d5f6c1f0001\u0000", "temperature"],
    ["ünïcödé", "\ud83d\ude00 and a lone \ud800"],
    ["x".repeat(70_000), "y"],
  ];
  for (const [a, b] of pairs) {
    assert.deepEqual(
      hashOf(hash, a, b),
      halfSipHashBytes(REFERENCE_KEY, pairBytes(a, b), { c: 1, d: 3 }, 4),
      `${a.slice(0, 20)} | ${b}`,
    );
  }
});

Deno.test("hashPair tells apart pairs that differ anywhere, and how the pair is split", () => {
  const hash = new KeyedHash();
  const key = (a: string, b: string) => hashOf(hash, a, b).join(",");
  assert.notEqual(key("ab", "c"), key("a", "bc"));
  assert.notEqual(key("", "a"), key("a", ""));
  const base = "0b0a3c1e-4a4e-4f7a-9c55-0d5f6c1f0001\u0000temperature";
  const seen = new Set([key(base, "")]);
  for (let i = 0; i < base.length; i++) {
    const flipped = base.slice(0, i) + String.fromCharCode(base.charCodeAt(i) ^ 1) +
      base.slice(i + 1);
    seen.add(key(flipped, ""));
  }
  assert.equal(seen.size, base.length + 1, "every one-bit change gives another hash");
  assert.equal(key(base, ""), key(base, ""), "the same pair, the same hash");
});

Deno.test("hashPair is keyed: another key gives other hashes", () => {
  const a = new KeyedHash(new Uint32Array([1, 2]));
  const b = new KeyedHash(new Uint32Array([1, 3]));
  assert.notDeepEqual(hashOf(a, "user", "feed"), hashOf(b, "user", "feed"));
  assert.notDeepEqual(hashOf(new KeyedHash(), "u", "f"), hashOf(new KeyedHash(), "u", "f"));
});

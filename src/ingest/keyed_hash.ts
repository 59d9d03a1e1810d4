/**
 * A keyed 128-bit hash of a pair of strings, for the compact lookup cache
 * (src/ingest/compact_cache.ts), which keeps a key's hash instead of the key: two keys with
 * equal hashes would be taken for one, so a publisher must not be able to find such a pair
 * for another tenant's feed. The hash is keyed with a secret drawn per process
 * (crypto.getRandomValues), so nobody outside the process can compute it, let alone aim it.
 *
 * The function is HalfSipHash (Aumasson and Bernstein's SipHash with 32-bit words, the
 * Linux kernel's hsiphash), whose rounds are all 32-bit additions, rotations and xors that V8
 * runs as plain integer code: with one compression and three finalization rounds (the
 * 1-3 variant, as Rust's HashMap runs SipHash) ~110 ns for a 50-character key, against
 * ~330 for two runs of 2-4. Its output is extended from 64 to 128 bits the way SipHash-128
 * extends 64: after the two output words, two more finalizations under other constants.
 * The 128-bit state bounds what the extra words add, but a blind collision stays a chance
 * of about 2^-64 per attempted key, and an accidental one 2^-96 per comparison of the
 * cache's 96-bit tags.
 *
 * Input: the UTF-16 code units of `a`, then a's length as two units, then the units of
 * `b`, two units a 32-bit word (the first in the low half), finished as HalfSipHash
 * finishes bytes (src/ingest/keyed_hash_test.ts checks `halfSipHashBytes` against the
 * reference vectors, and the string path against it).
 */

/** A per-process keyed hash: one 64-bit HalfSipHash key, as two 32-bit words. */
export class KeyedHash {
  readonly #k0: number;
  readonly #k1: number;

  /** `key`: two random 32-bit words (more are ignored); by default crypto.getRandomValues'. */
  constructor(key: Uint32Array = crypto.getRandomValues(new Uint32Array(2))) {
    this.#k0 = key[0] | 0;
    this.#k1 = key[1] | 0;
  }

  /** The 128-bit hash of (a, b), as four 32-bit words into `out[at … at + 3]`. */
  hashPair(a: string, b: string, out: Uint32Array, at = 0): void {
    const k0 = this.#k0, k1 = this.#k1;
    let v0 = k0, v1 = k1 ^ 0xee, v2 = 0x6c796765 ^ k0, v3 = 0x74656462 ^ k1;
    const units = a.length + 2 + b.length;
    // Two units a word; the last word is the odd unit left (or none) and the length in
    // bytes, as HalfSipHash ends its input. One compression round a word.
    for (let i = 0; i <= units; i += 2) {
      const m = i + 1 < units
        ? unitAt(a, b, i) | (unitAt(a, b, i + 1) << 16)
        : (i < units ? unitAt(a, b, i) : 0) | ((units * 2) << 24);
      v3 ^= m;
      v0 = (v0 + v1) | 0, v1 = (v1 << 5) | (v1 >>> 27), v1 ^= v0, v0 = (v0 << 16) | (v0 >>> 16);
      v2 = (v2 + v3) | 0, v3 = (v3 << 8) | (v3 >>> 24), v3 ^= v2;
      v0 = (v0 + v3) | 0, v3 = (v3 << 7) | (v3 >>> 25), v3 ^= v0;
      v2 = (v2 + v1) | 0, v1 = (v1 << 13) | (v1 >>> 19), v1 ^= v2, v2 = (v2 << 16) | (v2 >>> 16);
      v0 ^= m;
    }
    v2 ^= 0xee;
    for (let w = 0; w < 4; w++) {
      if (w > 0) v1 ^= OUTPUT_CONSTANTS[w];
      for (let r = 0; r < 3; r++) {
        v0 = (v0 + v1) | 0, v1 = (v1 << 5) | (v1 >>> 27), v1 ^= v0, v0 = (v0 << 16) | (v0 >>> 16);
        v2 = (v2 + v3) | 0, v3 = (v3 << 8) | (v3 >>> 24), v3 ^= v2;
        v0 = (v0 + v3) | 0, v3 = (v3 << 7) | (v3 >>> 25), v3 ^= v0;
        v2 = (v2 + v1) | 0, v1 = (v1 << 13) | (v1 >>> 19), v1 ^= v2, v2 = (v2 << 16) | (v2 >>> 16);
      }
      out[at + w] = v1 ^ v3;
    }
  }
}

/** Unit `i` of the input: a's units, a's length as two units, b's units. */
function unitAt(a: string, b: string, i: number): number {
  const la = a.length;
  if (i < la) return a.charCodeAt(i);
  if (i === la) return la & 0xffff;
  if (i === la + 1) return la >>> 16;
  return b.charCodeAt(i - la - 2);
}

/** What is xored into v1 before each output word after the first (0xdd: HalfSipHash's). */
const OUTPUT_CONSTANTS = [0, 0xdd, 0xcc, 0xbb];

/**
 * HalfSipHash-c-d of `bytes` as the reference (github.com/veorq/SipHash, halfsiphash.c)
 * computes it, with 2 output words as there (64 bits) or 4 as `hashPair` extends it. For
 * the tests: the reference vectors check the rounds, and `hashPair` is checked against it.
 */
export function halfSipHashBytes(
  key: readonly [number, number],
  bytes: Uint8Array,
  rounds: { c: number; d: number },
  words: 2 | 4,
): number[] {
  const [k0, k1] = [key[0] | 0, key[1] | 0];
  const v = [k0, k1 ^ 0xee, 0x6c796765 ^ k0, 0x74656462 ^ k1];
  const round = () => {
    v[0] = (v[0] + v[1]) | 0, v[1] = rotl(v[1], 5) ^ v[0], v[0] = rotl(v[0], 16);
    v[2] = (v[2] + v[3]) | 0, v[3] = rotl(v[3], 8) ^ v[2];
    v[0] = (v[0] + v[3]) | 0, v[3] = rotl(v[3], 7) ^ v[0];
    v[2] = (v[2] + v[1]) | 0, v[1] = rotl(v[1], 13) ^ v[2], v[2] = rotl(v[2], 16);
  };
  const whole = bytes.length - (bytes.length % 4);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < whole; i += 4) {
    const m = view.getUint32(i, true) | 0;
    v[3] ^= m;
    for (let r = 0; r < rounds.c; r++) round();
    v[0] ^= m;
  }
  let last = (bytes.length << 24) | 0;
  for (let i = whole; i < bytes.length; i++) last |= bytes[i] << (8 * (i - whole));
  v[3] ^= last;
  for (let r = 0; r < rounds.c; r++) round();
  v[0] ^= last;
  v[2] ^= 0xee;
  const out: number[] = [];
  for (let w = 0; w < words; w++) {
    if (w > 0) v[1] ^= OUTPUT_CONSTANTS[w];
    for (let r = 0; r < rounds.d; r++) round();
    out.push((v[1] ^ v[3]) >>> 0);
  }
  return out;
}

function rotl(x: number, b: number): number {
  return (x << b) | (x >>> (32 - b));
}

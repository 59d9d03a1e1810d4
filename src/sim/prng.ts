/**
 * A small seeded pseudo-random number generator, so that `simulate --seed N` produces
 * the same fleet and the same traffic every time. sfc32 (Chris Doty-Humphrey's "small
 * fast counting" generator, 128 bits of state, passes PractRand) seeded through
 * splitmix32 so that nearby seeds give unrelated streams. Not for cryptography.
 */

/** A stream of pseudo-random numbers. */
export interface Rng {
  /** A float in [0, 1). */
  next(): number;
  /** A whole number in [0, n). */
  int(n: number): number;
  /** A float in [min, max). */
  range(min: number, max: number): number;
  /** True with probability `p`. */
  chance(p: number): boolean;
  /** One element of `items`. */
  pick<T>(items: readonly T[]): T;
  /** A standard normal variate (Box–Muller). */
  normal(): number;
  /** `n` lowercase hexadecimal digits. */
  hex(n: number): string;
  /** A UUID in the version 4 layout (RFC 9562 §5.4), its random bits from this stream. */
  uuid(): string;
}

function splitmix32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/**
 * Creates a generator from a 32-bit seed; `stream` picks an independent stream of the
 * same seed (the fleet, the traffic and the churn each draw from their own, so that
 * turning churn on does not change which values are sent).
 *
 * @example
 * ```ts
 * const rng = createRng(42);
 * rng.uuid(); // the same UUID for seed 42, every time
 * ```
 */
export function createRng(seed: number, stream = 0): Rng {
  const init = splitmix32((seed ^ Math.imul(stream + 1, 0x632be5ab)) >>> 0);
  let a = init(), b = init(), c = init(), d = init();
  const u32 = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t;
  };
  // Warm up: the first outputs of a counting generator still show its seed.
  for (let i = 0; i < 12; i++) u32();

  const next = () => u32() / 4294967296;
  const hex = (n: number) => {
    let out = "";
    while (out.length < n) out += u32().toString(16).padStart(8, "0");
    return out.slice(0, n);
  };
  let spare: number | null = null;
  return {
    next,
    int: (n) => Math.floor(next() * n),
    range: (min, max) => min + next() * (max - min),
    chance: (p) => p > 0 && next() < p,
    pick: (items) => items[Math.floor(next() * items.length)],
    normal() {
      if (spare !== null) {
        const s = spare;
        spare = null;
        return s;
      }
      const u = 1 - next(); // (0, 1]: log(0) would be -Infinity
      const v = next();
      const r = Math.sqrt(-2 * Math.log(u));
      spare = r * Math.sin(2 * Math.PI * v);
      return r * Math.cos(2 * Math.PI * v);
    },
    hex,
    uuid() {
      const h = hex(32).split("");
      h[12] = "4"; // version
      h[16] = "89ab"[parseInt(h[16], 16) & 3]; // variant 10xx
      const s = h.join("");
      return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${
        s.slice(20)
      }`;
    },
  };
}

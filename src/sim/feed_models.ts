/**
 * Believable values for each kind of simulated feed: a temperature that follows the time
 * of day, a humidity that wanders, a battery that drains, a counter that only grows, a
 * switch that flips now and then. Each model keeps its own state and draws its noise
 * from the generator it is given, so a seed gives the same sequence.
 */
import type { FeedKind } from "./fleet.ts";
import type { Rng } from "./prng.ts";

/** A numeric or a text reading. */
export type ModelValue = { value: number; text?: undefined } | { text: string; value?: undefined };

/** A feed's value generator. */
export interface FeedModel {
  /** The next reading at model time `tUs` (µs since the epoch). */
  next(tUs: number): ModelValue;
  /** A reading far outside the sensor's range (a faulty sample), or null for kinds without one. */
  spike(): ModelValue | null;
}

const DAY_US = 86_400e6;
const round2 = (x: number) => Math.round(x * 100) / 100;
const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));

/** Creates the model of one feed; its starting state is drawn from `rng`. */
export function createFeedModel(kind: FeedKind, rng: Rng): FeedModel {
  switch (kind) {
    case "temperature": {
      // Indoor/outdoor mix: a mean, a daily swing peaking mid-afternoon (15:00 UTC), noise.
      const mean = rng.range(12, 24);
      const swing = rng.range(2, 8);
      return {
        next(tUs) {
          const phase = ((tUs % DAY_US) / DAY_US - 15 / 24) * 2 * Math.PI;
          return { value: round2(mean + swing * Math.cos(phase) + 0.15 * rng.normal()) };
        },
        spike: () => ({
          value: round2(rng.chance(0.5) ? rng.range(120, 200) : rng.range(-90, -60)),
        }),
      };
    }
    case "humidity": {
      let h = rng.range(35, 65);
      return {
        next() {
          h = clamp(h + 0.4 * rng.normal() + (50 - h) * 0.01, 5, 98);
          return { value: round2(h) };
        },
        spike: () => ({ value: round2(rng.range(130, 250)) }),
      };
    }
    case "battery": {
      let level = rng.range(40, 100);
      const drain = rng.range(0.002, 0.02);
      return {
        next() {
          level -= drain * (0.5 + rng.next());
          if (level < 3) level = 100; // someone changed the battery
          return { value: round2(level) };
        },
        spike: () => ({ value: round2(rng.range(150, 400)) }),
      };
    }
    case "counter": {
      let count = rng.int(10_000);
      return {
        next() {
          count += rng.int(4);
          return { value: count };
        },
        spike: () => null,
      };
    }
    case "switch": {
      let on = rng.chance(0.5);
      return {
        next() {
          if (rng.chance(0.05)) on = !on;
          return { text: on ? "ON" : "OFF" };
        },
        spike: () => null,
      };
    }
  }
}

/** One cycle of a drifting feed, in model time: out of range for about a third of it. */
export const DRIFT_PERIOD_US = 120e6;

/**
 * A model whose values drift out of the feed's range and back, again and again (to drive
 * threshold alerts, docs/operations.md "Alerts"): on top of `model`, a slow excursion of
 * 1.3 times the range, upwards when the feed has a maximum, else downwards, following
 * a half sine each cycle of `DRIFT_PERIOD_US`; `phase` (0..1) sets where in its cycle
 * the feed starts. Spikes stay as they are.
 */
export function drifting(
  model: FeedModel,
  range: { min: number | null; max: number | null },
  phase: number,
): FeedModel {
  const span = range.min !== null && range.max !== null ? range.max - range.min : 100;
  const amplitude = 1.3 * span * (range.max !== null ? 1 : -1);
  return {
    next(tUs) {
      const v = model.next(tUs);
      if (v.value === undefined) return v;
      const s = Math.sin(2 * Math.PI * (tUs / DRIFT_PERIOD_US + phase));
      return { value: round2(v.value + amplitude * Math.max(0, s)) };
    },
    spike: () => model.spike(),
  };
}

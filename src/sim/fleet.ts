/**
 * A simulated fleet: users, their devices, and each device's feeds, all drawn from a
 * seeded generator so that the same seed gives the same ids, codes, keys and
 * thresholds. Plain data: it is what `--manifest` writes and `--register` stores.
 */
import { createRng } from "./prng.ts";

/** The kinds of feed a simulated device carries. */
export type FeedKind = "temperature" | "humidity" | "battery" | "counter" | "switch";

/** Kinds in the order devices take them (each device starts at a random one). */
export const FEED_KINDS: readonly FeedKind[] = [
  "temperature",
  "humidity",
  "battery",
  "counter",
  "switch",
];

/** Thresholds per kind: the physical range of the sensor; none for counters and switches. */
const THRESHOLDS: Record<FeedKind, [number, number] | null> = {
  temperature: [-40, 85],
  humidity: [0, 100],
  battery: [0, 100],
  counter: null,
  switch: null,
};

/** One feed of a device. */
export interface FleetFeed {
  key: string;
  kind: FeedKind;
  thresholdMin: number | null;
  thresholdMax: number | null;
}

/** One device, with its owner. */
export interface FleetDevice {
  userId: string;
  code: string;
  feeds: FleetFeed[];
}

/** A whole fleet. */
export interface Fleet {
  seed: number;
  users: { id: string; devices: FleetDevice[] }[];
  /** All devices, user by user: the order traffic and connections refer to. */
  devices: FleetDevice[];
}

/** What to build. */
export interface FleetSpec {
  seed: number;
  users: number;
  devicesPerUser: number;
  feedsPerDevice: number;
}

const BOARDS = ["esp32", "rpi", "nrf52", "stm32"] as const;

/**
 * Builds a fleet. Feed keys name their device (`esp32-1a2b3c-temperature`) because a
 * feed key is unique per user (sql/001_init.sql), not per device.
 *
 * @example
 * ```ts
 * const fleet = buildFleet({ seed: 1, users: 2, devicesPerUser: 3, feedsPerDevice: 4 });
 * fleet.devices.length; // 6
 * ```
 */
export function buildFleet(spec: FleetSpec): Fleet {
  const rng = createRng(spec.seed, 1);
  const users: Fleet["users"] = [];
  const devices: FleetDevice[] = [];
  for (let u = 0; u < spec.users; u++) {
    const userId = rng.uuid();
    const codes = new Set<string>();
    const own: FleetDevice[] = [];
    for (let d = 0; d < spec.devicesPerUser; d++) {
      let code: string;
      do code = `${rng.pick(BOARDS)}-${rng.hex(6)}`; while (codes.has(code));
      codes.add(code);
      const first = rng.int(FEED_KINDS.length);
      const feeds: FleetFeed[] = [];
      for (let f = 0; f < spec.feedsPerDevice; f++) {
        const kind = FEED_KINDS[(first + f) % FEED_KINDS.length];
        const round = Math.floor(f / FEED_KINDS.length);
        const range = THRESHOLDS[kind];
        feeds.push({
          key: `${code}-${kind}${round > 0 ? `-${round + 1}` : ""}`,
          kind,
          thresholdMin: range ? range[0] : null,
          thresholdMax: range ? range[1] : null,
        });
      }
      own.push({ userId, code, feeds });
    }
    users.push({ id: userId, devices: own });
    devices.push(...own);
  }
  return { seed: spec.seed, users, devices };
}

/** The fleet as `--manifest` writes it: JSON with snake_case keys like the tables. */
export function fleetManifest(fleet: Fleet, topics: Record<string, string>): unknown {
  return {
    seed: fleet.seed,
    topics,
    users: fleet.users.map((u) => ({
      id: u.id,
      devices: u.devices.map((d) => ({
        code: d.code,
        feeds: d.feeds.map((f) => ({
          key: f.key,
          kind: f.kind,
          threshold_min: f.thresholdMin,
          threshold_max: f.thresholdMax,
        })),
      })),
    })),
  };
}

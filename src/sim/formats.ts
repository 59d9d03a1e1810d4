/**
 * `simulate --format`: fleets that speak what devices people already have, for a serve
 * running the matching mappings file of deploy/mappings/ (docs/simulate.md, "Other
 * formats"). `feedline` (the default) is feedline's own topics and payloads
 * (src/sim/traffic.ts); every other format here turns the fleet's devices and feed kinds
 * into that ecosystem's device names, topics and payloads, and names each feed as the
 * recipe will (`<device>.<path>`), so `--register` registers exactly what serve looks up.
 *
 * To add a format: an entry in `SIM_FORMATS` and its name in `SIM_FORMAT_NAMES`
 * (src/cli/simulate_options.ts), and docs/simulate.md says which recipe it goes with.
 * (`sparkplug` has an engine of its own, src/sim/sparkplug_fleet.ts: births, deaths, aliases.)
 */
import { encode } from "cborg";
import type { FeedModel, ModelValue } from "./feed_models.ts";
import type { FeedKind, Fleet, FleetDevice, FleetFeed } from "./fleet.ts";
import { createFeedModel } from "./feed_models.ts";
import { createRng, type Rng } from "./prng.ts";
import { isoMicros, type SimMessage, type Traffic } from "./traffic.ts";

/** One reading of a device, as the traffic drew it. */
export interface SimReading {
  feed: FleetFeed;
  value: ModelValue;
}

/** A message of a format: where and what. */
export interface FormatMessage {
  topic: string;
  payload: string | Uint8Array;
  /** Readings it carries (as serve will count them). */
  readings: number;
}

/** A format other than feedline's own. */
export interface SimFormat {
  /** The mappings file serve runs with (for messages and docs). */
  recipe: string;
  /**
   * The tenant alias of its recipe, registered by `--register` for the fleet's one user;
   * null when its topics carry the user id (then the fleet keeps its users).
   */
  alias: string | null;
  /** The device name this format gives a fleet device (`rng` is the fleet's). */
  deviceName(rng: Rng, index: number): string;
  /** The path of a feed of `kind` in the payload (`round` > 0: the 2nd, 3rd of that kind). */
  path(kind: FeedKind, round: number): string;
  statusTopic(device: FleetDevice): string;
  online: string;
  offline: string;
  /** One message of `device` with the readings `readings`, at model time `tUs`. */
  message(device: FleetDevice, readings: SimReading[], tUs: number): FormatMessage;
}

const suffix = (round: number, sep: string) => (round > 0 ? `${sep}${round + 1}` : "");
const numberOf = (v: ModelValue) => v.value ?? (v.text === "ON" ? 1 : 0);

/** `{a: {b: 1}}` from `[["a.b", 1]]`: the nested object a payload's paths describe. */
function nest(entries: [string, unknown][]): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [path, value] of entries) {
    const levels = path.split(".");
    let node = root;
    for (const level of levels.slice(0, -1)) {
      node = (node[level] ??= {}) as Record<string, unknown>;
    }
    node[levels[levels.length - 1]] = value;
  }
  return root;
}

/**
 * The readings of `device` as (path, value) pairs: a feed's path is its key without the
 * device's name and the dot (`fleetInFormat` keyed it so).
 */
function pathsOf(device: FleetDevice, readings: SimReading[]) {
  return readings.map((r) => [r.feed.key.slice(device.code.length + 1), r.value] as const);
}

const zigbee2mqtt: SimFormat = {
  recipe: "deploy/mappings/zigbee2mqtt.json",
  alias: "zigbee2mqtt",
  deviceName: (rng) => `0x00158d00${rng.hex(8)}`,
  path(kind, round) {
    const base = {
      temperature: "temperature",
      humidity: "humidity",
      battery: "battery",
      counter: "energy",
      switch: "state",
    }[kind];
    return `${base}${suffix(round, "_l")}`;
  },
  statusTopic: (d) => `zigbee2mqtt/${d.code}/availability`,
  online: '{"state":"online"}',
  offline: '{"state":"offline"}',
  message(device, readings) {
    const fields = pathsOf(device, readings).map(([p, v]) =>
      [p, p.startsWith("state") ? v.text ?? String(v.value) : numberOf(v)] as [string, unknown]
    );
    fields.push(["linkquality", 80 + (readings.length * 17) % 150]);
    return {
      topic: `zigbee2mqtt/${device.code}`,
      payload: JSON.stringify(Object.fromEntries(fields)),
      readings: readings.length,
    };
  },
};

const tasmota: SimFormat = {
  recipe: "deploy/mappings/tasmota.json",
  alias: "tasmota",
  deviceName: (rng) => `tasmota_${rng.hex(6).toUpperCase()}`,
  path(kind, round) {
    if (kind === "switch") return round === 0 ? "POWER" : `POWER${round + 1}`;
    const sensor =
      { temperature: "AM2301", humidity: "AM2301", battery: "ANALOG", counter: "ENERGY" }[kind];
    const field =
      { temperature: "Temperature", humidity: "Humidity", battery: "A0", counter: "Total" }[kind];
    return `${sensor}${suffix(round, "-")}.${field}`;
  },
  statusTopic: (d) => `tele/${d.code}/LWT`,
  online: "Online",
  offline: "Offline",
  message(device, readings, tUs) {
    // Tasmota's Time: the device's local time, without a zone (the recipe does not use it).
    const time = new Date(tUs / 1000).toISOString().slice(0, 19);
    const paths = pathsOf(device, readings);
    const relays = paths.filter(([p]) => p.startsWith("POWER"));
    const sensors = paths.filter(([p]) => !p.startsWith("POWER"));
    // A device with relays sends its STATE now and then, its SENSOR otherwise.
    if (relays.length > 0 && (sensors.length === 0 || Math.floor(tUs / 1000) % 2 === 0)) {
      const state = {
        Time: time,
        ...Object.fromEntries(relays.map(([p, v]) => [p, v.text ?? "OFF"])),
      };
      return {
        topic: `tele/${device.code}/STATE`,
        payload: JSON.stringify(state),
        readings: relays.length,
      };
    }
    const sensor = {
      Time: time,
      ...nest(sensors.map(([p, v]) => [p, numberOf(v)])),
      TempUnit: "C",
    };
    return {
      topic: `tele/${device.code}/SENSOR`,
      payload: JSON.stringify(sensor),
      readings: sensors.length,
    };
  },
};

const shellyGen2: SimFormat = {
  recipe: "deploy/mappings/shelly-gen2.json",
  alias: "shelly",
  deviceName: (rng) => `shellyplus1pm-${rng.hex(12)}`,
  path(kind, round) {
    switch (kind) {
      case "temperature":
        return `temperature:${round}.tC`;
      case "humidity":
        return `humidity:${round}.rh`;
      case "battery":
        return `devicepower:${round}.battery.percent`;
      case "counter":
        return `switch:${round}.aenergy.total`;
      case "switch":
        return `switch:${round}.output`;
    }
  },
  statusTopic: (d) => `${d.code}/online`,
  online: "true",
  offline: "false",
  message(device, readings, tUs) {
    const params = nest(
      pathsOf(device, readings).map(([p, v]) =>
        [p, p.endsWith(".output") ? v.text === "ON" : numberOf(v)] as [string, unknown]
      ),
    );
    // Shelly's ts: Unix seconds; with microseconds here, so two messages never share one.
    const ts = Number((tUs / 1e6).toFixed(6));
    return {
      topic: `${device.code}/events/rpc`,
      payload: JSON.stringify({
        src: device.code,
        dst: `${device.code}/events`,
        method: "NotifyStatus",
        params: { ts, ...params },
      }),
      readings: readings.length,
    };
  },
};

const cbor: SimFormat = {
  recipe: "deploy/mappings/cbor.json",
  alias: null,
  deviceName: (rng, index) => `cbor-${rng.hex(6)}-${index}`,
  path: (kind, round) => `${kind}${suffix(round, "_")}`,
  statusTopic: (d) => `cbor/${d.userId}/${d.code}/status`,
  online: "online",
  offline: "offline",
  message(device, readings, tUs) {
    const fields = pathsOf(device, readings).map(([p, v]) => [p, v.text ?? v.value]);
    return {
      topic: `cbor/${device.userId}/${device.code}`,
      payload: encode({ ...Object.fromEntries(fields), ts: isoMicros(tUs) }),
      readings: readings.length,
    };
  },
};

/** Every `--format` but `feedline`. */
export const SIM_FORMATS: Readonly<Record<string, SimFormat>> = {
  zigbee2mqtt,
  tasmota,
  "shelly-gen2": shellyGen2,
  cbor,
};

/**
 * The fleet as `format` names it: devices renamed, feeds keyed `<device>.<path>`, and
 * with an alias, every device under the fleet's first user (the alias's one tenant).
 */
export function fleetInFormat(fleet: Fleet, format: SimFormat, rng: Rng): Fleet {
  const owner = fleet.users[0].id;
  const names = new Set<string>();
  const devices = fleet.devices.map((d, index) => {
    let code: string;
    do code = format.deviceName(rng, index); while (names.has(code));
    names.add(code);
    const rounds = new Map<FeedKind, number>();
    const feeds = d.feeds.map((f) => {
      const round = rounds.get(f.kind) ?? 0;
      rounds.set(f.kind, round + 1);
      return { ...f, key: `${code}.${format.path(f.kind, round)}` };
    });
    return { userId: format.alias ? owner : d.userId, code, feeds };
  });
  const users = format.alias
    ? [{ id: owner, devices }]
    : fleet.users.map((u) => ({ id: u.id, devices: devices.filter((d) => d.userId === u.id) }));
  return { seed: fleet.seed, users, devices };
}

/**
 * The traffic of a fleet in `format` (made by `fleetInFormat`): each message one device's
 * readings of all its feeds, the device and values drawn from `seed` as in
 * src/sim/traffic.ts. No spikes and no bad messages: those are feedline's own traffic.
 */
export function createFormatTraffic(seed: number, fleet: Fleet, format: SimFormat): Traffic {
  const rng = createRng(seed, 2);
  const models = new Map<FleetFeed, FeedModel>();
  for (const device of fleet.devices) {
    for (const feed of device.feeds) models.set(feed, createFeedModel(feed.kind, rng));
  }
  return {
    reasons: [],
    next(tUs): SimMessage {
      const device = rng.int(fleet.devices.length);
      const d = fleet.devices[device];
      const readings = d.feeds.map((feed) => ({ feed, value: models.get(feed)!.next(tUs) }));
      const m = format.message(d, readings, tUs);
      return { ...m, device, kind: "mapped" };
    },
  };
}

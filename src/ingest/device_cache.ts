/**
 * The device cache: (user_id, device_code) → the id of a registered device, as the
 * processor's device lookup found it (src/ingest/write/lookups.ts). Only registered
 * devices are cached (one may be registered any moment); entries expire after the TTL, and
 * the processor clears the cache when the database refused a status event (a device
 * deleted meanwhile).
 */
import { LookupCache } from "./lookup_cache.ts";

/** Cache key of a device. */
export function deviceKeyOf(userId: string, deviceCode: string): string {
  return `${userId}\u0000${deviceCode}`;
}

/** The registered devices already looked up: `deviceKeyOf(user_id, code)` → device id. */
export class DeviceCache extends LookupCache<number> {}

/**
 * The device cache: (user_id, device_code) → the id of a registered device, as the
 * processor's device lookup found it (src/ingest/write/lookups.ts), off the V8 heap
 * (src/ingest/compact_cache.ts). Only registered devices are cached (one may be registered
 * any moment); entries expire by generation, and the processor clears the cache when the
 * database refused a status event (a device deleted meanwhile).
 */
import { CompactCache } from "./compact_cache.ts";

/** Cache key of a device. */
export function deviceKeyOf(userId: string, deviceCode: string): string {
  return `${userId}\u0000${deviceCode}`;
}

/** The registered devices already looked up: `deviceKeyOf(user_id, code)` → device id. */
export class DeviceCache extends CompactCache {
  get(key: string, now = Date.now()): number | undefined {
    const slot = this.findLive(key, now);
    return slot < 0 ? undefined : this.valueAt(slot);
  }

  set(key: string, id: number, now = Date.now(), seenVersion?: number): void {
    this.store(key, id, 0, now, seenVersion);
  }
}

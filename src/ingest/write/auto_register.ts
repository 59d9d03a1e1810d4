/**
 * Dev mode (`--auto-register`): every user, device and feed a batch names is created
 * before the lookups, so nothing is rejected as unknown. Runs in the batch's
 * transaction; what exists already is left as it is.
 */
import type { Transaction } from "../../db/transaction.ts";
import type { BatchKeys } from "./plan.ts";

/** Creates the users, devices and feeds of `keys` (built with `autoRegister` on). */
export async function autoRegister(tx: Transaction, keys: BatchKeys): Promise<void> {
  if (keys.devices.size === 0) return;
  const devices = [...keys.devices.values()];
  const users = [...new Set(devices.map((d) => d.userId))];
  await tx`insert into users (id) select * from unnest(${users}::uuid[]) on conflict do nothing`;
  await tx`
    insert into devices (user_id, code)
    select * from unnest(${devices.map((d) => d.userId)}::uuid[],
                         ${devices.map((d) => d.deviceCode)}::text[])
    on conflict do nothing`;
  if (keys.feeds.size === 0) return;
  const feeds = [...keys.feeds.values()];
  await tx`
    insert into feeds (user_id, key, device_id)
    select x.u, x.k, d.id
    from unnest(${feeds.map((f) => f.userId)}::uuid[], ${feeds.map((f) => f.feedKey)}::text[],
                ${feeds.map((f) => f.deviceCode)}::text[]) as x(u, k, c)
    left join devices d on d.user_id = x.u and d.code = x.c
    on conflict do nothing`;
}

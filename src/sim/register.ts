/**
 * `simulate --register`: writes a fleet's users, devices and feeds (with thresholds, and
 * the alert settings of --threshold-mode and --max-silence) into the database, so that
 * serve accepts its traffic without auto-register. One transaction; running it again
 * changes nothing but thresholds and settings that differ.
 */
import postgres from "postgres";
import type { Fleet } from "./fleet.ts";
import { FeedlineError } from "../errors.ts";
import { redactUrl } from "../log.ts";

/** What --register writes besides the fleet: the feeds' alert settings (sql/010). */
export interface RegisterSettings {
  thresholdMode: "reject" | "alert";
  /** `max_silence` in ms; null: none. */
  maxSilenceMs: number | null;
  /** `--format` with a recipe naming its tenant by alias (sql/008): registered for the fleet's user. */
  alias?: string | null;
  /** What gave the URL (`--database-url`, `DATABASE_URL`), named in errors. */
  urlFrom?: string;
}

const DEFAULT_SETTINGS: RegisterSettings = { thresholdMode: "reject", maxSilenceMs: null };

/** Rows written (new ones; an existing row is left alone or only its thresholds updated). */
export interface RegisterResult {
  users: number;
  devices: number;
  feeds: number;
}

/**
 * Registers `fleet` in one transaction and returns how many rows were new or changed.
 *
 * @example
 * ```ts
 * await registerFleet(sql, buildFleet({ seed: 1, users: 1, devicesPerUser: 2, feedsPerDevice: 3 }));
 * ```
 */
export function registerFleet(
  sql: postgres.Sql,
  fleet: Fleet,
  settings: RegisterSettings = DEFAULT_SETTINGS,
): Promise<RegisterResult> {
  const { thresholdMode, maxSilenceMs } = settings;
  const userIds = fleet.users.map((u) => u.id);
  const devUsers = fleet.devices.map((d) => d.userId);
  const devCodes = fleet.devices.map((d) => d.code);
  const feeds = fleet.devices.flatMap((d) => d.feeds.map((f) => ({ d, f })));
  return sql.begin(async (tx) => {
    const users = await tx`
      insert into users (id) select * from unnest(${userIds}::uuid[])
      on conflict do nothing`;
    const devices = await tx`
      insert into devices (user_id, code)
      select * from unnest(${devUsers}::uuid[], ${devCodes}::text[])
      on conflict do nothing`;
    // `on conflict ... do update ... where` (PostgreSQL 9.5+) touches only rows whose
    // device, thresholds or alert settings differ, so a second run leaves updated_at alone.
    const feedRows = await tx`
      insert into feeds (user_id, key, device_id, threshold_min, threshold_max, threshold_mode,
                         max_silence)
      select x.u, x.k, d.id, x.lo, x.hi, ${thresholdMode},
             ${maxSilenceMs}::float8 * interval '1 millisecond'
      from unnest(${feeds.map((x) => x.d.userId)}::uuid[], ${feeds.map((x) => x.f.key)}::text[],
                  ${feeds.map((x) => x.d.code)}::text[],
                  ${feeds.map((x) => x.f.thresholdMin)}::float8[],
                  ${feeds.map((x) => x.f.thresholdMax)}::float8[]) as x(u, k, c, lo, hi)
      join devices d on d.user_id = x.u and d.code = x.c
      on conflict (user_id, key) do update
        set device_id = excluded.device_id,
            threshold_min = excluded.threshold_min,
            threshold_max = excluded.threshold_max,
            threshold_mode = excluded.threshold_mode,
            max_silence = excluded.max_silence,
            updated_at = now()
        where feeds.device_id is distinct from excluded.device_id
           or feeds.threshold_min is distinct from excluded.threshold_min
           or feeds.threshold_max is distinct from excluded.threshold_max
           or feeds.threshold_mode is distinct from excluded.threshold_mode
           or feeds.max_silence is distinct from excluded.max_silence`;
    // `--format` with a recipe that names its tenant by alias (sql/008): the fleet's user.
    if (settings.alias) {
      await tx`insert into tenant_aliases (alias, user_id) values (${settings.alias}, ${userIds[0]})
        on conflict (alias) do update set user_id = excluded.user_id
        where tenant_aliases.user_id is distinct from excluded.user_id`;
    }
    return { users: users.count, devices: devices.count, feeds: feedRows.count };
  });
}

/** A PostgreSQL error as one line: its message, and its SQLSTATE when the message lacks it. */
function pgErrorText(error: unknown): string {
  // The same wording as src/db/database.ts's describePgError, which this wing may not import.
  const e = error as { code?: string; message?: string };
  const message = e?.message ?? String(error);
  return e?.code && !message.includes(e.code) ? `${message} (${e.code})` : message;
}

/**
 * Connects to `url`, registers `fleet` and disconnects; a database without the schema
 * or out of reach is one actionable {@linkcode FeedlineError}.
 */
export async function registerInDatabase(
  url: string,
  fleet: Fleet,
  settings: RegisterSettings = DEFAULT_SETTINGS,
): Promise<RegisterResult> {
  // No `select 1` probe first: against the embedded PGlite, a query outside a
  // transaction can be disturbed by serve's traffic on the shared backend; the
  // transaction of registerFleet is safe, and its first query tells whether we connect.
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    return await registerFleet(sql, fleet, settings);
  } catch (error) {
    const missing = (error as { code?: string }).code === "42P01";
    throw new FeedlineError(
      missing ? "CONFIG_INVALID" : "DATABASE_UNREACHABLE",
      missing
        ? `the database at ${redactUrl(url)} has no feedline tables; run \`deno task migrate\` ` +
          `(or start serve, which migrates) first`
        : `cannot register the fleet in ${redactUrl(url)}: ${pgErrorText(error)}; ` +
          `check ${settings.urlFrom ?? "DATABASE_URL"} and that the server is running`,
      { cause: error },
    );
  } finally {
    await sql.end({ timeout: 5 });
  }
}

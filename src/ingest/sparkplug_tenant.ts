/**
 * The tenant of Sparkplug B messages (`--sparkplug-tenant`), found once at start: a user
 * id must be a registered user (created in dev mode, with auto-register); an alias is
 * looked up in `tenant_aliases` (docs/topics-and-payloads.md, "Sparkplug B"). A tenant
 * that cannot be found stops the start with one line saying what to insert.
 */
import type postgres from "postgres";
import { isUuid } from "../core/decode.ts";
import type { SparkplugRoute } from "../core/sparkplug/decode.ts";
import { FeedlineError } from "../errors.ts";

/** Sets `route.userId` from `tenant`; throws CONFIG_INVALID when there is no such tenant. */
export async function resolveSparkplugTenant(
  sql: postgres.Sql,
  tenant: string,
  route: SparkplugRoute,
  opts: { autoRegister: boolean },
): Promise<void> {
  if (isUuid(tenant)) {
    const id = tenant.toLowerCase();
    if (opts.autoRegister) {
      await sql`insert into users (id) values (${id}) on conflict do nothing`;
    }
    const [user] = await sql`select 1 from users where id = ${id}`;
    if (!user) {
      throw new FeedlineError(
        "CONFIG_INVALID",
        `--sparkplug-tenant ${id} is not a registered user; register it with ` +
          `insert into users (id) values ('${id}'), or give another tenant`,
      );
    }
    route.userId = id;
    return;
  }
  const [table] = await sql<{ present: boolean }[]>`
    select to_regclass('tenant_aliases') is not null as present`;
  if (!table.present) {
    throw new FeedlineError(
      "CONFIG_INVALID",
      `--sparkplug-tenant "${tenant}" is not a user id (UUID), and this database has no ` +
        "tenant_aliases table; give the user's UUID",
    );
  }
  const [alias] = await sql<{ user_id: string }[]>`
    select user_id from tenant_aliases where alias = ${tenant}`;
  if (!alias) {
    throw new FeedlineError(
      "CONFIG_INVALID",
      `--sparkplug-tenant "${tenant}" is no tenant alias; add it with insert into ` +
        `tenant_aliases (alias, user_id) values ('${tenant}', '<user uuid>')`,
    );
  }
  route.userId = alias.user_id;
}

import assert from "node:assert/strict";
import { feedLookup } from "../src/ingest/write/lookups.ts";
import { createTestDatabase } from "./support/db.ts";

// sql/016: the feed lookup of a cold batch reads only what the unique key (user_id, key)
// carries, so over a large fleet it costs an index page per feed, not also a page of
// `feeds` (docs/performance.md, "Fleet scale (issue 26)"). A column added to the lookup
// without adding it to the key's INCLUDE list turns the plan back into an Index Scan.
Deno.test("the feed lookup is answered from the unique key alone (sql/016)", async () => {
  const db = await createTestDatabase();
  try {
    const u = crypto.randomUUID();
    await db.sql`insert into users (id) values (${u})`;
    await db.sql`
      insert into feeds (user_id, key, threshold_min, threshold_max, threshold_mode,
                         threshold_hysteresis, threshold_min_duration, max_silence)
      values (${u}, 'temp', 0, 50, 'alert', 2, '30 seconds', '1 minute'),
             (${u}, 'plain', null, null, 'reject', null, null, null)`;
    // All-visible, as autovacuum leaves a table that ingest does not update.
    await db.sql`vacuum analyze feeds`;
    const { plan, rows } = await db.sql.begin(async (tx) => {
      // A table this small would be read whole; ask for the plan a large fleet gets.
      await tx`set local enable_seqscan = off`;
      await tx`set local enable_hashjoin = off`;
      await tx`set local enable_mergejoin = off`;
      const users = [u, u, u];
      const keys = ["temp", "plain", "absent"];
      const [explained] = await tx`explain (format json) ${feedLookup(tx, users, keys)}`;
      return {
        plan: JSON.stringify(explained["QUERY PLAN"]),
        rows: await feedLookup(tx, users, keys),
      };
    });
    assert.match(plan, /"Node Type":"Index Only Scan"/);
    assert.match(plan, /"Index Name":"feeds_user_key"/);
    assert.deepEqual(
      rows.map((
        r,
      ) => [
        r.key,
        r.is_active,
        r.threshold_min,
        r.alert_mode,
        r.min_duration_us,
        r.watches_silence,
      ])
        .sort(),
      [["plain", true, null, false, null, false], ["temp", true, 0, true, 30e6, true]],
    );
  } finally {
    await db.close();
  }
});

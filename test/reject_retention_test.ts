import assert from "node:assert/strict";
import { pruneRejects } from "../src/db/reject_retention.ts";
import { createTestDatabase } from "./support/db.ts";

Deno.test("pruneRejects() deletes rejects past the retention, then the oldest beyond the row limit", async () => {
  const db = await createTestDatabase();
  try {
    await db.sql`
      insert into ingest_rejects (topic, reason, received_at)
      select 't/' || (51 - i), 'bad_payload', now() - make_interval(hours => 51 - i) + interval '30 minutes'
      from generate_series(1, 50) as i`; // ids grow with time, as in production
    // Ages are 0.5 h .. 49.5 h: older than 24 h are 26 of the 50.
    assert.equal(await pruneRejects(db.sql, { retentionHours: 24, maxRows: 0, chunk: 7 }), 26);
    // 24 left; keep the newest 10.
    assert.equal(await pruneRejects(db.sql, { retentionHours: 24, maxRows: 10, chunk: 7 }), 14);
    const rows = await db.sql`select topic from ingest_rejects order by received_at desc`;
    assert.deepEqual(rows.map((r) => r.topic), Array.from({ length: 10 }, (_, i) => `t/${i + 1}`));
    assert.equal(await pruneRejects(db.sql, { retentionHours: 24, maxRows: 10 }), 0);
  } finally {
    await db.close();
  }
});

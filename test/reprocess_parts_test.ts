/**
 * Re-processed rejects leave the dead letter in the commit that stores them or writes
 * them anew, also when the processor bisects the batch into several transactions
 * (src/ingest/batch_transaction.ts, `part`). Before, each part's transaction deleted the
 * reject rows of the whole batch: once the first part committed, the rest of the batch
 * was in neither table until its own part committed, and lost for good if the process
 * stopped in between.
 *
 * A deferred trigger refuses one reading at COMMIT, so the batch is bisected; another
 * records, at every commit that touches either table, how many messages are stored or
 * dead-lettered. Every one of those commits must account for all of them.
 */
import assert from "node:assert/strict";
import { parseReplayArgs, runReplay } from "../commands/replay.ts";
import { compileTopics } from "../src/core/topics.ts";
import { processBatch } from "../src/ingest/processor.ts";
import { createTestDatabase, refuseValueAtCommit, type TestDatabase } from "./support/db.ts";
import { startServeFixture } from "./support/fixture.ts";
import { decodedMessage } from "./support/messages.ts";
import { publish, waitFor } from "./support/serve.ts";

const VALUES = [1, 66, 3, 4];

/** Refuses 66 at COMMIT; records messages stored + dead-lettered at every commit. */
async function refuseAndAudit(db: TestDatabase): Promise<void> {
  await refuseValueAtCommit(db, 66);
  await db.sql.unsafe(`
    create table commit_audit (accounted int not null);
    create function audit_commit() returns trigger language plpgsql as $$
    begin
      insert into commit_audit
      select (select count(*) from feed_values) + (select count(distinct (received_at, topic))
                                                  from ingest_rejects);
      return null;
    end $$;
    create constraint trigger audit_values after insert on feed_values
      deferrable initially deferred for each row execute function audit_commit();
    create constraint trigger audit_rejects after insert or delete on ingest_rejects
      deferrable initially deferred for each row execute function audit_commit();`);
}

async function assertOutcome(db: TestDatabase): Promise<void> {
  const values = await db.sql<{ value: string }[]>`select value from feed_values order by value`;
  assert.deepEqual(values.map((v) => Number(v.value)), [1, 3, 4]);
  const rejects = await db.sql<{ reason: string; detail: string }[]>`
    select reason, detail from ingest_rejects`;
  assert.deepEqual(rejects.map((r) => r.reason), ["db_rejected"]);
  assert.match(rejects[0].detail, /no 66/);
  const [{ commits, least }] = await db.sql<{ commits: number; least: number }[]>`
    select count(*)::int as commits, min(accounted)::int as least from commit_audit`;
  assert.ok(commits >= 3, `the batch was written in parts (${commits} audited commits)`);
  assert.equal(least, VALUES.length, "every commit kept each message stored or dead-lettered");
}

Deno.test("replay --rejects: a bisected batch takes each reject out in the commit that stores it or writes it anew", async () => {
  const db = await createTestDatabase();
  try {
    const user = crypto.randomUUID();
    await db.sql`insert into users (id) values (${user})`;
    const decodeOpts = {
      router: compileTopics(),
      maxPayloadBytes: 65536,
      maxTextLength: 255,
      maxFutureSkewMs: 300_000,
    };
    const batch = VALUES.map((v) => decodedMessage(`${user}/d1/feeds/temp`, String(v), decodeOpts));
    const first = await processBatch(db.sql, batch);
    assert.deepEqual(first.rejected, { unknown_feed: 4 });

    await db.sql`insert into devices (user_id, code) values (${user}, 'd1')`;
    await db.sql`insert into feeds (user_id, key) values (${user}, 'temp')`;
    await refuseAndAudit(db);
    const config = parseReplayArgs(
      ["--database-url", db.url, "--rejects", "--progress", "off"],
      {},
    );
    const totals = await runReplay(config, { out: () => {}, err: () => {}, errIsTerminal: false });
    assert.deepEqual(totals.outcomes, { stored: 3, rejected: 1, skipped: 0 });
    assert.equal(totals.rejectsCleared, 3, "three left the dead letter; 66 is in it again");
    await assertOutcome(db);
  } finally {
    await db.close();
  }
});

Deno.test("serve's re-processing on registration: a bisected batch takes each reject out in the commit that stores it or writes it anew", async () => {
  const f = await startServeFixture({
    device: "dev1",
    feeds: [],
    args: ["--batch-interval-ms", "20"],
    env: { FEEDLINE_REPROCESS_ON_REGISTER: "on" },
  });
  try {
    const { serve, pub, user, db } = f;
    const ts = Date.now() - 10_000;
    for (const [i, v] of VALUES.entries()) {
      await publish(
        pub,
        serve.feedTopic(user, "dev1", "temp"),
        JSON.stringify({ value: v, ts: ts + i }),
      );
    }
    await waitFor("4 rejects", async () => {
      const [{ n }] = await db.sql<{ n: number }[]>`select count(*)::int as n from ingest_rejects`;
      return n === VALUES.length;
    });
    await refuseAndAudit(db);
    await db.sql`insert into feeds (user_id, key) values (${user}, 'temp')`;
    const cleared = () => serve.metrics.rejectsCleared.get({ reason: "unknown_feed" });
    await waitFor("the rejects re-processed and counted", async () => {
      const [{ r }] = await db.sql<{ r: number }[]>`
        select count(*)::int as r from ingest_rejects where reason = 'db_rejected'`;
      return r === 1 && cleared() >= 4;
    });
    await assertOutcome(db);
    // Every unknown_feed row is gone for good (66 is dead-lettered anew, for another reason).
    assert.equal(cleared(), 4);
    assert.equal(serve.metrics.rejected.get({ reason: "db_rejected" }), 1);
    assert.equal(serve.metrics.reprocessed.get({ outcome: "stored" }), 3);
    assert.equal(serve.metrics.reprocessed.get({ outcome: "rejected" }), 1);
  } finally {
    await f.close();
  }
});

/**
 * `feedline trace` and serve's re-processing of rejects on registration (issue 24),
 * against a real PostgreSQL and broker: trace tells stored, rejected and duplicate apart
 * from the capture file with totals that add up; inserting the missing feeds makes serve
 * store the rejected messages (a 5 KiB one whole) with no command run; three serves on one
 * database re-process each reject once.
 */
import assert from "node:assert/strict";
import { parseTraceArgs, runTrace } from "../commands/trace.ts";
import type { TraceReport } from "../src/replay/trace.ts";
import { parseReplayArgs, runReplay } from "../commands/replay.ts";
import { decode } from "../src/core/decode.ts";
import { processBatch } from "../src/ingest/processor.ts";
import { createLogger } from "../src/log.ts";
import { queryDevices } from "../src/ops/status_queries.ts";
import { createTestDatabase } from "./support/db.ts";
import { startServeFixture } from "./support/fixture.ts";
import {
  prefixedTopicArgs,
  publish,
  startTestServe,
  type TestServe,
  waitFor,
} from "./support/serve.ts";

async function traceOf(dbUrl: string, prefix: string, extra: string[]): Promise<{
  report: TraceReport;
  text: string;
}> {
  let text = "";
  const config = parseTraceArgs(
    ["--database-url", dbUrl, "--since", "10m", ...prefixedTopicArgs(prefix), ...extra],
    {},
  );
  const report = await runTrace(config, (t) => text += t);
  return { report, text };
}

function sumOfOutcomes(t: TraceReport["totals"]): number {
  return t.stored + t.rejected + t.skipped + t.duplicate + t.dropped + t.unknown;
}

Deno.test("trace tells stored, rejected and duplicate apart; inserting the feeds stores the rejects (5 KiB whole) within 5 s, and trace shows them reprocessed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "feedline-trace-test-" });
  const capture = `${dir}/capture.jsonl`;
  const f = await startServeFixture({
    device: "dev1",
    args: ["--capture", capture, "--batch-interval-ms", "20", "--feed-cache-ttl-ms", "60000"],
    env: { FEEDLINE_REPROCESS_ON_REGISTER: "on" },
    log: Deno.env.get("TRACE_TEST_LOG")
      ? createLogger({ level: "debug", format: "text" })
      : undefined,
  });
  try {
    const { serve, pub, user, db } = f;
    const ts = Date.now() - 1000;
    const good = JSON.stringify({ value: 21.5, ts });
    const big = JSON.stringify({ value: 7, ts, note: "x".repeat(5 * 1024) });
    await publish(pub, serve.feedTopic(user, "dev1", "temp"), good);
    await publish(pub, serve.feedTopic(user, "dev1", "hum"), "40");
    await publish(pub, serve.feedTopic(user, "dev1", "temp"), good);
    await publish(pub, serve.feedTopic(user, "dev1", "blob"), big);
    await waitFor("4 messages captured", async () => {
      const text = await Deno.readTextFile(capture).catch(() => "");
      return text.split("\n").filter((l) => l).length === 4;
    });

    const filter = ["--topic", `${serve.prefix}/${user}/dev1/#`, "--capture", capture];
    const before = await traceOf(db.url, serve.prefix, [...filter, "--json"]);
    assert.deepEqual(
      before.report.lines.map((l) => [l.outcome, l.reasons.join(",")]),
      [["stored", ""], ["rejected", "unknown_feed"], ["duplicate", ""], [
        "rejected",
        "unknown_feed",
      ]],
    );
    assert.equal(before.report.totals.received, 4);
    assert.equal(sumOfOutcomes(before.report.totals), 4);
    assert.match(before.text, /"totals":\{"received":4,"stored":1,"rejected":2/);
    // Per device, computed from the same lines.
    const [dev] = before.report.devices;
    assert.deepEqual(
      [dev.device, dev.received, dev.stored, dev.duplicate, dev.rejected, dev.lastReject?.reason],
      ["dev1", 4, 1, 1, { unknown_feed: 2 }, "unknown_feed"],
    );
    // The unknown-feed reject kept the whole 5 KiB payload, its QoS and retain flag.
    const [blob] = await db.sql<{ kept: number; size: number; qos: number; retain: boolean }[]>`
      select octet_length(payload) as kept, payload_size as size, qos, retain
      from ingest_rejects where topic like '%/blob'`;
    assert.deepEqual(blob, { kept: big.length, size: big.length, qos: 1, retain: false });

    // The status page's devices, computed on read likewise (src/ops/status_queries.ts).
    const { recent } = await queryDevices(db.sql, serve.config.router);
    const row = recent.find((d) => d.code === "dev1")!;
    assert.deepEqual([row.stored_1h, row.rejected_1h, row.last_reject?.reason], [
      1,
      2,
      "unknown_feed",
    ]);

    // Registering the feeds is all it takes: no command is run.
    const registered = Date.now();
    await db.sql`insert into feeds (user_id, key) values (${user}, 'hum'), (${user}, 'blob')`;
    await waitFor("the rejects stored and gone from ingest_rejects", async () => {
      const [{ rejects, values }] = await db.sql<{ rejects: number; values: number }[]>`
        select (select count(*)::int from ingest_rejects) as rejects,
               (select count(*)::int from feed_values) as values`;
      // The metrics move once the commit is confirmed, the rows may be seen a moment before.
      return rejects === 0 && values === 3 &&
        serve.metrics.rejectsCleared.get({ reason: "unknown_feed" }) === 2;
    }, 5_000);
    assert.ok(Date.now() - registered < 5_000);
    assert.equal(serve.metrics.reprocessed.get({ outcome: "stored" }), 2);
    assert.equal(serve.metrics.rejectsCleared.get({ reason: "unknown_feed" }), 2);

    const after = await traceOf(db.url, serve.prefix, filter);
    assert.deepEqual(
      after.report.lines.map((l) => `${l.outcome}${l.reprocessed ? " reprocessed" : ""}`),
      ["stored", "stored reprocessed", "duplicate", "stored reprocessed"],
    );
    assert.match(after.text, /stored \(reprocessed\)\s+\S+\/hum\s+hum @/);
    assert.match(
      after.text,
      /received 4 = stored 3 \+ rejected 0 \+ skipped 0 \+ duplicate 1 \+ dropped 0/,
    );

    // Without the capture file: what the database keeps, and a note of what it cannot know.
    const dbOnly = await traceOf(db.url, serve.prefix, ["--feed", "hum"]);
    assert.equal(dbOnly.report.source, "database");
    assert.deepEqual(dbOnly.report.lines.map((l) => [l.outcome, l.reprocessed]), [[
      "stored",
      true,
    ]]);
    assert.match(dbOnly.text, /note: no capture file: duplicates absorbed/);
    assert.match(after.text, /device dev1: received 4, stored 3, rejected 0, duplicate 1/);
  } finally {
    await f.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("three serves on one database re-process each reject once", async () => {
  const f = await startServeFixture({
    device: "dev1",
    args: ["--batch-interval-ms", "20"],
    env: { FEEDLINE_REPROCESS_ON_REGISTER: "on", FEEDLINE_REPROCESS_BATCH_SIZE: "7" },
  });
  const others: TestServe[] = [];
  try {
    const { serve, pub, user, db } = f;
    // One serve alone first: 20 rejects (ids 1 to 20, more than a batch of 7) all stored.
    for (let i = 0; i < 20; i++) {
      await publish(
        pub,
        serve.feedTopic(user, "dev1", "solo"),
        JSON.stringify({ value: i, ts: 1_767_225_601_000 + i }),
      );
    }
    await waitFor("20 rejects", async () => {
      const [{ c }] = await db.sql<{ c: number }[]>`select count(*)::int as c from ingest_rejects`;
      return c === 20;
    });
    await db.sql`insert into feeds (user_id, key) values (${user}, 'solo')`;
    await waitFor("the 20 stored by the one serve", async () => {
      const [{ r }] = await db.sql<{ r: number }[]>`select count(*)::int as r from ingest_rejects`;
      return r === 0 && serve.metrics.rejectsCleared.get({ reason: "unknown_feed" }) === 20;
    });

    const n = 60;
    for (let i = 0; i < n; i++) {
      await publish(
        pub,
        serve.feedTopic(user, "dev1", "late"),
        JSON.stringify({
          value: i,
          ts: 1_767_225_600_000 + i,
        }),
      );
    }
    await waitFor(`${n} rejects`, async () => {
      const [{ c }] = await db.sql<{ c: number }[]>`select count(*)::int as c from ingest_rejects`;
      return c === n;
    });
    // Two more instances of the same deployment (same topics), started once the rejects
    // are in: they receive none of them, but re-process them with the first.
    for (const name of ["b", "c"]) {
      others.push(
        await startTestServe({
          databaseUrl: f.db.url,
          mqttUrl: f.broker.url,
          protocolVersion: f.broker.protocolVersion,
          prefix: serve.prefix,
          args: [
            "--batch-interval-ms",
            "20",
            "--client-id",
            `feedline-test-${serve.prefix}-${name}`,
          ],
          env: { FEEDLINE_REPROCESS_ON_REGISTER: "on", FEEDLINE_REPROCESS_BATCH_SIZE: "7" },
        }),
      );
    }
    await db.sql`insert into feeds (user_id, key) values (${user}, 'late')`;
    const all = [serve, ...others];
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const cleared = () => all.map((s) => s.metrics.rejectsCleared.get({ reason: "unknown_feed" }));
    const stored = () => all.map((s) => s.metrics.reprocessed.get({ outcome: "stored" }));
    // A serve counts a batch once its commit is confirmed: the rows may be seen first.
    await waitFor("every reject stored, and counted", async () => {
      const [{ r, v }] = await db.sql<{ r: number; v: number }[]>`
        select (select count(*)::int from ingest_rejects) as r,
               (select count(*)::int from feed_values) as v`;
      return r === 0 && v === 20 + n && sum(cleared()) >= 20 + n && sum(stored()) >= 20 + n;
    });
    assert.equal(sum(cleared()), 20 + n, `cleared by each serve: ${cleared()}`);
    assert.equal(sum(stored()), 20 + n, `stored by each serve: ${stored()}`);
    const [{ marks }] = await db.sql<{ marks: number }[]>`
      select count(*)::int as marks from ingest_reprocessed`;
    assert.equal(marks, 20 + n);
  } finally {
    for (const o of others) await o.stop();
    await f.close();
  }
});

Deno.test("a reject a registration fixes keeps its whole payload, QoS and retain flag, and replay --rejects re-processes it as it came", async () => {
  const db = await createTestDatabase();
  try {
    const user = crypto.randomUUID();
    await db.sql`insert into users (id) values (${user})`;
    const decodeOpts = parseReplayArgs(["--rejects"], {}).decode;
    const message = (feed: string, payload: string, retain: boolean, us: number) => {
      const inbound = {
        topic: `${user}/dev1/feeds/${feed}`,
        payload: new TextEncoder().encode(payload),
        qos: 2 as const,
        retain,
        receivedAtUs: us,
      };
      return { inbound, decoded: decode(inbound, decodeOpts) };
    };
    const now = Date.now() * 1000;
    const badPayload = { kind: "reject", reason: "bad_payload", detail: "test" } as const;
    const long = JSON.stringify({ value: 1, ts: Date.now() - 5000, note: "y".repeat(3000) });
    await processBatch(db.sql, [
      message("a", long, false, now), // longer than the cap, kept whole
      message("a", "7", true, now + 1), // retained, no time of its own
      { ...message("a", "x", false, now + 2), decoded: badPayload },
    ], { rejectPayloadCap: 16 });
    const rows = await db.sql<
      { reason: string; kept: number; size: number; qos: number; retain: boolean }[]
    >`
      select reason, octet_length(payload) as kept, payload_size as size, qos, retain
      from ingest_rejects order by received_at`;
    assert.deepEqual(rows.map((r) => [r.reason, r.kept, r.size, r.qos, r.retain]), [
      ["unknown_feed", long.length, long.length, 2, false],
      ["unknown_feed", 1, 1, 2, true],
      ["bad_payload", 1, 1, 2, false], // other reasons keep the cap (here within it)
    ]);

    await db.sql`insert into devices (user_id, code) values (${user}, 'dev1')`;
    await db.sql`insert into feeds (user_id, key) values (${user}, 'a')`;
    const config = parseReplayArgs(
      ["--database-url", db.url, "--rejects", "--reason", "unknown_feed", "--progress", "off"],
      {},
    );
    const totals = await runReplay(config, { out: () => {}, err: () => {}, errIsTerminal: false });
    // The long one is stored (nothing left in place for being cut); the retained one is
    // skipped as retained, as serve skips it live.
    assert.equal(totals.rejectsUnreplayable, 0);
    assert.deepEqual(totals.outcomes, { stored: 1, rejected: 0, skipped: 1 });
    assert.equal(totals.skipped.retained, 1);
  } finally {
    await db.close();
  }
});

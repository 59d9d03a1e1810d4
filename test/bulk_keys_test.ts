/**
 * Issue 20, "Every reading its own key": the entries of a many-feeds message are never
 * lost to one another's key. A seeded property over generated batches of many-feeds
 * messages (repeated feeds, with and without `ts`, unknown feeds, bad values, shared
 * device times across messages), decoded as serve decodes them (the intake, with its
 * receive clock in a lane) and written by the real processor into PostgreSQL: for every
 * message, readings stored + readings absorbed as an equal duplicate + rejected entries =
 * entries, and the rows and reject rows are exactly the ones the rules predict.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { clockState, nowUs, setLane } from "../src/clock.ts";
import { compileTopics } from "../src/core/topics.ts";
import { decode, type DecodeOptions } from "../src/core/decode.ts";
import type { DecodedMessage } from "../src/core/message.ts";
import { FeedCache } from "../src/ingest/feed_cache.ts";
import { decodeReceived } from "../src/ingest/intake.ts";
import { intArrayLiteral } from "../src/ingest/pg_array.ts";
import { processBatch } from "../src/ingest/processor.ts";
import { withTestDatabase } from "./support/db.ts";
import { assertProperty } from "./support/poison.ts";

const DECODE: DecodeOptions = {
  router: compileTopics(),
  maxPayloadBytes: 65536,
  maxTextLength: 255,
  maxFutureSkewMs: 300_000,
};

/** One entry: a feed (`nope` is not registered), a value, and a device time (an index). */
interface EntryDesc {
  feed: "f0" | "f1" | "nope";
  value: number | "NaN";
  ts: 0 | 1 | 2 | null;
}

/** A message: the array form (feeds may repeat), the object form, or one feed alone. */
type MessageDesc =
  | { form: "array"; entries: EntryDesc[] }
  | { form: "object"; entries: EntryDesc[]; sharedTs: 0 | 1 | 2 | null }
  | { form: "single"; entry: EntryDesc };

const entry: fc.Arbitrary<EntryDesc> = fc.record({
  feed: fc.constantFrom<EntryDesc["feed"]>("f0", "f0", "f1", "f1", "nope"),
  value: fc.oneof(
    { arbitrary: fc.integer({ min: 0, max: 3 }), weight: 9 },
    { arbitrary: fc.constant("NaN" as const), weight: 1 },
  ),
  ts: fc.constantFrom<EntryDesc["ts"]>(null, null, null, 0, 1, 2),
});

const messageDesc: fc.Arbitrary<MessageDesc> = fc.oneof(
  {
    arbitrary: fc.array(entry, { minLength: 1, maxLength: 8 }).map((entries) => ({
      form: "array" as const,
      entries,
    })),
    weight: 5,
  },
  {
    arbitrary: fc.record({
      entries: fc.uniqueArray(entry, { minLength: 1, maxLength: 3, selector: (e) => e.feed }),
      sharedTs: fc.constantFrom<0 | 1 | 2 | null>(null, null, 0, 1),
    }).map((m) => ({ form: "object" as const, ...m })),
    weight: 2,
  },
  {
    arbitrary: entry.map((e) => ({
      form: "single" as const,
      entry: { ...e, feed: "f0" as const },
    })),
    weight: 2,
  },
);

/** The entries a message stands for, each with the device time (s) it ends up with. */
function entriesOf(m: MessageDesc): EntryDesc[] {
  if (m.form === "single") return [m.entry];
  if (m.form === "array") return m.entries;
  return m.entries.map((e) => ({ ...e, ts: e.ts ?? m.sharedTs }));
}

function materialize(m: MessageDesc, user: string, tsBase: number): DecodedMessage {
  const ts = (t: number | null) => (t === null ? {} : { ts: tsBase + t });
  let topic: string, payload: unknown;
  if (m.form === "single") {
    topic = `${user}/d1/feeds/${m.entry.feed}`;
    payload = { value: m.entry.value, ...ts(m.entry.ts) };
  } else if (m.form === "array") {
    topic = `${user}/d1/feeds`;
    payload = m.entries.map((e) => ({ feed: e.feed, value: e.value, ...ts(e.ts) }));
  } else {
    topic = `${user}/d1/feeds`;
    payload = Object.fromEntries([
      ...m.entries.map((e) => [e.feed, { value: e.value, ...ts(e.ts) }]),
      ...(m.sharedTs === null ? [] : [["ts", tsBase + m.sharedTs]]),
    ]);
  }
  const inbound = {
    topic,
    payload: new TextEncoder().encode(JSON.stringify(payload)),
    qos: 1 as const,
    retain: false,
    receivedAtUs: nowUs(),
  };
  // As serve's intake does it: decode, and keep the clock past the message's stamps.
  return { inbound, decoded: decodeReceived(decode, inbound, DECODE) };
}

/** What the rules say becomes of each message's entries, in batch order. */
function expected(batch: MessageDesc[]) {
  const byKey = new Map<string, number>(); // feed@ts → the value that holds the key
  return batch.map((m) => {
    const out = { rows: [] as string[], absorbed: 0, rejected: 0 };
    for (const e of entriesOf(m)) {
      if (e.value === "NaN" || e.feed === "nope") {
        out.rejected++;
      } else if (e.ts === null) {
        out.rows.push(`${e.feed}=${e.value}`);
      } else {
        const key = `${e.feed}@${e.ts}`;
        const holder = byKey.get(key);
        if (holder === undefined) {
          byKey.set(key, e.value);
          out.rows.push(`${e.feed}=${e.value}`);
        } else if (holder === e.value) {
          out.absorbed++; // the same reading twice: it is stored
        } else {
          out.rejected++; // value_conflict
        }
      }
    }
    out.rows.sort();
    return out;
  });
}

Deno.test("property: every entry of a many-feeds message is stored, absorbed as its equal, or rejected with a reason", async () => {
  const LANE = 5;
  const before = clockState();
  setLane(LANE, 16);
  try {
    await withTestDatabase(async (sql) => {
      const user = crypto.randomUUID();
      await sql`insert into users (id) values (${user})`;
      await sql`insert into devices (user_id, code) values (${user}, 'd1')`;
      await sql`insert into feeds (user_id, key) values (${user}, 'f0'), (${user}, 'f1')`;
      const cache = new FeedCache({ ttlMs: 30_000 });
      let run = 0;
      await assertProperty(
        fc.asyncProperty(
          fc.array(messageDesc, { minLength: 1, maxLength: 24 }),
          async (descs) => {
            // Device times of their own per run: runs do not absorb one another's readings.
            const tsBase = Date.UTC(2001, 0, 1) / 1000 + 1000 * run++;
            const batch = descs.map((m) => materialize(m, user, tsBase));
            const result = await processBatch(sql, batch, { feedCache: cache });
            const at = batch.map((p) => p.inbound.receivedAtUs);

            const rows = await sql<{ r: string; fv: string; c: string }[]>`
              select (extract(epoch from v.received_at) * 1e6)::int8::text as r,
                     f.key || '=' || v.value::text as fv,
                     (extract(epoch from v.created_at) * 1e6)::int8::text as c
              from feed_values v join feeds f on f.id = v.feed_id
              where v.received_at = any(select to_timestamp(0) + x * interval '1 microsecond'
                                        from unnest(${intArrayLiteral(at)}::int8[]) as x)`;
            const rejects = await sql<{ r: string; reason: string; detail: string }[]>`
              select (extract(epoch from received_at) * 1e6)::int8::text as r, reason, detail
              from ingest_rejects
              where received_at = any(select to_timestamp(0) + x * interval '1 microsecond'
                                      from unnest(${intArrayLiteral(at)}::int8[]) as x)`;
            const want = expected(descs);
            let stored = 0, rejectedMessages = 0;
            descs.forEach((m, i) => {
              const us = String(at[i]);
              const got = {
                rows: rows.filter((r) => r.r === us).map((r) => r.fv).sort(),
                rejected: rejects.filter((r) => r.r === us)
                  .reduce((n, r) => n + r.detail.split("; ").length, 0),
              };
              const entries = entriesOf(m).length;
              const what = `message ${i} ${new TextDecoder().decode(batch[i].inbound.payload)}`;
              assert.equal(
                got.rows.length + want[i].absorbed + got.rejected,
                entries,
                `${what}: every entry stored, absorbed or rejected (${JSON.stringify(got)})`,
              );
              assert.deepEqual(got.rows, want[i].rows, `${what}: the rows it left`);
              assert.equal(got.rejected, want[i].rejected, `${what}: its rejected entries`);
              if (want[i].rows.length + want[i].absorbed > 0) stored++;
              else if (want[i].rejected > 0) rejectedMessages++;
            });
            assert.deepEqual(result.outcomes, {
              stored,
              rejected: rejectedMessages,
              skipped: 0,
            });
            const reasons = new Set(rejects.map((r) => r.reason));
            for (const reason of reasons) {
              assert.ok(
                ["bad_payload", "unknown_feed", "value_conflict"].includes(reason),
                `reason ${reason}`,
              );
            }
            // Receive-time stamps stay in the clock's lane (docs/delivery.md).
            for (const r of rows) {
              if (Number(r.c) >= at[0]) {
                assert.equal(Number(r.c) % 16, LANE, `stamp ${r.c} in lane ${LANE}`);
              }
            }
          },
        ),
        { numRuns: 40 },
      );
    });
  } finally {
    setLane(before.lane, before.lanes);
  }
});

/**
 * `replay --rejects`: re-processes dead-lettered messages from `ingest_rejects` (after a
 * feed was created, a threshold fixed, a device registered) through the same processor.
 *
 * Per batch, in one transaction: the selected rows are deleted, the messages processed
 * again with their original receive time, and whatever is still rejected is written
 * again by the processor. So a message that is now stored loses its reject row, one
 * that is rejected again keeps exactly one row per reason (never two), and a crash in
 * between changes nothing. A message's rows are found by (received_at, topic): receive
 * times are unique per process (src/clock.ts), and that pair is how the dead letter
 * keys a message (its unique index is on received_at, reason, topic).
 *
 * A row whose payload was capped when it was stored (payload_size larger than what was
 * kept, see --reject-payload-cap) cannot be re-processed; it is left in place and counted.
 * The reasons a registration fixes keep the whole payload (src/ingest/write/rejects.ts
 * `REPLAYED_WHOLE`), and their QoS and retain flag (sql/012), so those are never cut.
 */
import type postgres from "postgres";
import type { DecodeOptions } from "../core/decode.ts";
import { decodeRejected, type RejectedMessage } from "../ingest/reprocess.ts";
import type { ProcessorOptions } from "../ingest/processor.ts";
import { timestampOfUs } from "../db/timestamps.ts";
import { writeBatch } from "./into_database.ts";
import type { ReplayTotals } from "./totals.ts";

/** What `replay --rejects` needs. */
export interface RejectReplayOptions {
  sql: postgres.Sql;
  decode: DecodeOptions;
  processor: ProcessorOptions;
  batchSize: number;
  /** Only rows with one of these reasons; null: all. */
  reasons: string[] | null;
  sinceUs: number | null;
  untilUs: number | null;
  /** False for topics outside --topic. */
  acceptTopic: (topic: string) => boolean;
  /** Called after each batch with the messages handled so far. */
  onProgress?: (done: number) => void;
}

/** Messages matching the filters that can be re-processed, and those that cannot. */
export async function countRejects(
  opts: RejectReplayOptions,
): Promise<{ replayable: number; capped: number }> {
  const { sql } = opts;
  const [row] = await sql<{ replayable: number; capped: number }[]>`
    select count(*) filter (where not capped)::int as replayable,
           count(*) filter (where capped)::int as capped
    from (select received_at, topic, bool_or(payload_size > octet_length(payload)) as capped
          from ingest_rejects
          where ${matching(sql, opts)}
          group by received_at, topic) m`;
  return row;
}

// The filters as a condition; times travel as µs integers, exactly.
function matching(sql: postgres.Sql, opts: RejectReplayOptions) {
  return sql`
    (${opts.reasons}::text[] is null or reason = any(${opts.reasons}::text[]))
    and (${opts.sinceUs}::int8 is null
         or received_at >= ${timestampOfUs(sql, sql`${opts.sinceUs}::int8`)})
    and (${opts.untilUs}::int8 is null
         or received_at < ${timestampOfUs(sql, sql`${opts.untilUs}::int8`)})`;
}

/** Re-processes the matching rejects; counts into `totals`. */
export async function replayRejects(
  opts: RejectReplayOptions,
  totals: ReplayTotals,
): Promise<void> {
  const { sql } = opts;
  totals.rejectsUnreplayable = (await countRejects(opts)).capped;
  let afterUs: string | null = null;
  let afterTopic = "";
  for (;;) {
    // Keyset pagination in (received_at, topic) order: rows written again for messages
    // of this page have the same key, so later pages never see them again.
    const page: RejectedMessage[] = await sql<RejectedMessage[]>`
      select (extract(epoch from received_at) * 1000000)::int8 as at_us, topic, payload,
             max(qos)::int as qos, bool_or(retain) as retain, array_agg(id) as ids
      from ingest_rejects
      where ${matching(sql, opts)}
        and (${afterUs}::int8 is null
             or (received_at, topic) >
                (${timestampOfUs(sql, sql`${afterUs}::int8`)}, ${afterTopic}))
      group by received_at, topic, payload
      having bool_and(payload_size <= octet_length(payload))
      order by received_at, topic
      limit ${opts.batchSize}`;
    if (page.length === 0) return;
    const last = page[page.length - 1];
    afterUs = last.at_us;
    afterTopic = last.topic;

    const selected = page.filter((m) => opts.acceptTopic(m.topic));
    totals.messages += page.length;
    totals.filtered += page.length - selected.length;
    if (selected.length > 0) await reprocess(opts, selected, totals);
    opts.onProgress?.(totals.messages);
  }
}

async function reprocess(
  opts: RejectReplayOptions,
  messages: RejectedMessage[],
  totals: ReplayTotals,
): Promise<void> {
  const batch = decodeRejected(messages, opts.decode);
  const rejectedOf = new Map(batch.map((d, i) => [d, messages[i]]));
  let left = 0;
  await writeBatch(
    {
      sql: opts.sql,
      processor: {
        ...opts.processor,
        // Once per transaction: a batch the processor bisects commits in parts, and each
        // part deletes only its own messages' rows, in the commit that stores them or
        // writes them anew.
        async inTransaction(tx, work, part) {
          const mine = part.map((d) => rejectedOf.get(d)!);
          const ids = mine.flatMap((m) => m.ids);
          await tx`delete from ingest_rejects where id = any(${ids}::int8[])`;
          await work();
          const [row] = await tx<{ n: number }[]>`
          select count(*)::int as n from (
            select distinct r.received_at, r.topic
            from unnest(${mine.map((m) => m.at_us)}::int8[],
                        ${mine.map((m) => m.topic)}::text[]) as k(a, t)
            join ingest_rejects r
              on r.received_at = ${timestampOfUs(tx, "k.a")}
             and r.topic = k.t) s`;
          return () => left += row.n;
        },
      },
    },
    batch,
    totals,
  );
  totals.rejectsCleared += messages.length - left;
}

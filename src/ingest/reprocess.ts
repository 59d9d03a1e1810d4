/**
 * serve's re-processing on registration (`--reprocess-on-register`, docs/replay.md,
 * "Rejects that fix themselves"): when a feed, a device or a tenant alias is inserted,
 * the dead-lettered messages whose reason a registration fixes (`unknown_feed`,
 * `unknown_device`, `unknown_tenant`) go through the processor again, in the background
 * and bounded (a batch at a time, at most `ratePerSec` messages a second).
 *
 * How serve learns of a registration: the NOTIFY of sql/012's triggers on the LISTEN
 * connection of the feed cache (src/ingest/feed_notify.ts); where there is none (the
 * embedded PGlite, a transaction pooler), a look every `checkIntervalMs` (the cache TTL,
 * between 1 and 5 s) at the newest feed, device and alias. A pass starts at start too (registrations made
 * while no serve ran).
 *
 * A pass takes the rows of those reasons up to the newest row at its start, a batch at a
 * time. In the batch's transaction it claims them (`delete … for update skip locked`: of
 * several serves each row goes to one, and rows another serve holds are skipped), processes
 * the claimed messages as `replay --rejects` does (src/replay/rejects.ts, which shares
 * `decodeRejected`), and records each
 * that left the dead letter in `ingest_reprocessed` for `trace`. A message still unknown is
 * rejected again with the same key, in the same commit: nothing is lost in between, and
 * its new row is above the pass's watermark, so one pass never loops on it. A follow-up
 * pass 3 s later takes the rows written since the pass began (a batch that looked the feed
 * up just before the registration committed writes its reject just after).
 */
import type postgres from "postgres";
import { decode, type DecodeOptions } from "../core/decode.ts";
import type { DecodedMessage, Inbound, Qos } from "../core/message.ts";
import { timestampOfUs } from "../db/timestamps.ts";
import { listenForChanges } from "./feed_notify.ts";
import type { IngestMetrics } from "./metrics.ts";
import { type BatchResult, processBatch, type ProcessorOptions } from "./processor.ts";
import { FIXED_BY_REGISTRATION } from "./write/rejects.ts";
import type { Logger } from "../log.ts";

/** One dead-lettered message: its rows (one per reason) and how it came. */
export interface RejectedMessage {
  at_us: string;
  topic: string;
  payload: Uint8Array;
  /** NULL in rows written before sql/012: read as QoS 0, not retained. */
  qos: number | null;
  retain: boolean | null;
  ids: string[];
}

/** The messages of dead-letter rows, decoded again as they came. */
export function decodeRejected(
  messages: RejectedMessage[],
  options: DecodeOptions,
): DecodedMessage[] {
  return messages.map((m) => {
    const inbound: Inbound = {
      topic: m.topic,
      payload: new Uint8Array(m.payload),
      qos: (m.qos ?? 0) as Qos,
      retain: m.retain ?? false,
      receivedAtUs: Number(m.at_us),
    };
    return { inbound, decoded: decode(inbound, options) };
  });
}

/** The channel sql/012's triggers notify on. */
export const REGISTERED_CHANNEL = "feedline_registered";

/** What the re-processing needs. */
export interface ReprocessOptions {
  sql: postgres.Sql;
  /** The LISTEN connection (src/db/database.ts `listen`); null: look every interval. */
  listenSql: postgres.Sql | null;
  decode: DecodeOptions;
  processor: ProcessorOptions;
  batchSize: number;
  ratePerSec: number;
  checkIntervalMs: number;
  metrics: IngestMetrics;
  log: Logger;
}

/** A running re-processing. */
export interface Reprocessor {
  /** Asks for a pass (a registration was heard). */
  kick(): void;
  /** Resolves once no pass is running and none is due (for tests). */
  idle(): Promise<void>;
  /** Stops after the batch in progress. */
  close(): Promise<void>;
}

interface Row {
  id: string;
  at_us: string;
  topic: string;
  payload: Uint8Array;
  qos: number | null;
  retain: boolean | null;
}

/** Starts the re-processing; see the module doc. */
export async function startReprocessor(opts: ReprocessOptions): Promise<Reprocessor> {
  const { sql, log } = opts;
  let pending = true;
  let closed = false;
  let failures = 0;
  let wake: (() => void) | null = null;
  let idleWaiters: (() => void)[] = [];
  let unlisten: (() => Promise<void>) | null = null;
  const kick = () => {
    pending = true;
    wake?.();
  };
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = null;
        resolve();
      }
      wake = done;
    });

  const listening = opts.listenSql !== null && await listenForChanges(
    opts.listenSql,
    {
      channel: REGISTERED_CHANNEL,
      what: "registration",
      onChange: kick,
      onReset: kick,
    },
    log,
    undefined,
    (u) => unlisten = u,
  );
  let mark = listening ? "" : await registrationMark(sql);

  // After a pass, one more a little later over the rows written since it began: a batch
  // that looked the feed up just before the registration committed may write its reject
  // just after the pass took its rows.
  let followUp: { atMs: number; after: string } | null = null;
  const loop = (async () => {
    while (!closed) {
      if (!pending && !listening) {
        const now = await registrationMark(sql).catch(() => mark);
        if (now !== mark) {
          mark = now;
          pending = true;
        }
      }
      const dueFollowUp = followUp !== null && followUp.atMs <= Date.now();
      if (!pending && !dueFollowUp) {
        if (followUp === null) {
          for (const w of idleWaiters) w();
          idleWaiters = [];
        }
        const idleMs = listening ? 3_600_000 : opts.checkIntervalMs;
        await sleep(followUp ? Math.min(idleMs, followUp.atMs - Date.now()) : idleMs);
        continue;
      }
      const full = pending; // else the follow-up of the last full pass
      const after = full ? "0" : followUp!.after;
      pending = false;
      followUp = null;
      try {
        const top = await pass(opts, () => closed, after);
        if (full) followUp = { atMs: Date.now() + FOLLOW_UP_MS, after: top ?? "0" };
        failures = 0;
      } catch (error) {
        pending = true; // tried again after a pause, longer each time (at most a minute)
        const pauseMs = Math.min(1000 * 2 ** failures++, 60_000);
        log.warn("re-processing rejects after a registration failed; retrying", {
          error: (error as Error).message,
          retry_in_ms: pauseMs,
        });
        if (!closed) await sleep(pauseMs);
      }
    }
  })();

  return {
    kick,
    idle: () => new Promise<void>((resolve) => idleWaiters.push(resolve)),
    async close() {
      closed = true;
      wake?.();
      await loop;
      for (const w of idleWaiters) w();
      await unlisten?.().catch(() => {});
    },
  };
}

/**
 * serve's re-processing, per its options (`--reprocess-on-register`, docs/replay.md); null
 * when off. Closed with the other parts, and by serve before its final line.
 */
export async function reprocessOnRegister(
  config: {
    reprocessOnRegister: boolean;
    reprocessBatchSize: number;
    reprocessRate: number;
    feedCacheTtlMs: number;
    decode: DecodeOptions;
  },
  parts: {
    db: { sql: postgres.Sql; listen: { sql: postgres.Sql | null } };
    processor: ProcessorOptions;
    metrics: IngestMetrics;
    log: Logger;
    closers: { push(what: string, close: () => Promise<void>): void };
  },
): Promise<Reprocessor | null> {
  if (!config.reprocessOnRegister) return null;
  const { db, processor, metrics, log } = parts;
  const reprocess = await startReprocessor({
    ...{ sql: db.sql, listenSql: db.listen.sql, decode: config.decode, processor, metrics, log },
    batchSize: config.reprocessBatchSize,
    ratePerSec: config.reprocessRate,
    // No negative cache entries (src/ingest/lookup_cache.ts): a new feed is found at once,
    // so the look need not wait for the TTL; it costs three index lookups.
    checkIntervalMs: Math.min(Math.max(config.feedCacheTtlMs, 1000), 5000),
  });
  parts.closers.push("the re-processing of rejects", () => reprocess.close());
  return reprocess;
}

/** The newest feed, device and tenant alias: a change means something was registered. */
async function registrationMark(sql: postgres.Sql): Promise<string> {
  const [row] = await sql<{ mark: string }[]>`
    select concat_ws('/', (select max(id) from feeds), (select max(id) from devices),
                     (select count(*) from tenant_aliases),
                     (select max(created_at) from tenant_aliases)) as mark`;
  return row.mark;
}

/** How long after a pass its follow-up looks at the rows written since. */
const FOLLOW_UP_MS = 3_000;

/**
 * One pass over the rows above `from` there are at its start (see the module doc); returns
 * the newest id it covered.
 */
async function pass(
  opts: ReprocessOptions,
  stopped: () => boolean,
  from: string,
): Promise<string | null> {
  const { sql } = opts;
  const [{ top }] = await sql<{ top: string | null }[]>`
    select max(id)::text as top from ingest_rejects where reason = any(${FIXED_BY_REGISTRATION})`;
  if (top === null) return from;
  let after = from;
  while (!stopped()) {
    const started = performance.now();
    // Ordered by the column, not by the text `id` of the answer ("10" < "9").
    const rows = await sql<Row[]>`
      select id::text, (extract(epoch from received_at) * 1000000)::int8::text as at_us, topic,
             payload, qos, retain
      from ingest_rejects
      where reason = any(${FIXED_BY_REGISTRATION}) and id > ${after}::int8 and id <= ${top}::int8
      order by ingest_rejects.id limit ${opts.batchSize}`;
    if (rows.length === 0) return top;
    after = rows[rows.length - 1].id;
    await reprocessBatch(opts, rows);
    // At most ratePerSec messages a second: the live traffic comes first.
    const due = (rows.length / opts.ratePerSec) * 1000 - (performance.now() - started);
    if (due > 0) await new Promise((r) => setTimeout(r, due));
  }
  return after; // stopped: the rows above it are left for the next start
}

async function reprocessBatch(opts: ReprocessOptions, rows: Row[]): Promise<void> {
  const { metrics } = opts;
  // One message per (receive time, topic); a message may have rows of two reasons.
  const byMessage = new Map<string, RejectedMessage>();
  for (const r of rows) {
    const key = `${r.at_us} ${r.topic}`;
    const m = byMessage.get(key);
    if (m) m.ids.push(r.id);
    else byMessage.set(key, { ...r, ids: [r.id] });
  }
  // A message this serve decodes into another reject (its topic is not one of this
  // serve's templates or mappings: another instance's) is left to the others.
  const all = [...byMessage.values()];
  const decodedAll = decodeRejected(all, opts.decode);
  const usable = all.map((_, i) => {
    const d = decodedAll[i].decoded;
    return d.kind !== "reject" || FIXED_BY_REGISTRATION.includes(d.reason);
  });
  const messages = all.filter((_, i) => usable[i]);
  const decoded: DecodedMessage[] = decodedAll.filter((_, i) => usable[i]);
  if (messages.length === 0) return;
  // Each message's reject rows, by the decoded object the processor hands back in `part`.
  const rejectedOf = new Map(decoded.map((d, i) => [d, messages[i]]));
  const taken = new Map<string, number>(); // rows claimed (deleted), per reason
  const again = new Map<string, number>(); // rows of a fixable reason written anew
  let claimedMessages = 0;
  const add = (into: Map<string, number>, from: Map<string, number>) => {
    for (const [reason, n] of from) into.set(reason, (into.get(reason) ?? 0) + n);
  };
  const result: BatchResult = await processBatch(opts.sql, decoded.slice(), {
    ...opts.processor,
    // Once per transaction: a batch the processor bisects commits in parts, and each part
    // claims only its own messages' rows, so a reject leaves the dead letter in the same
    // commit that stores it or writes it anew (never in an earlier part's).
    async inTransaction(tx, work, part) {
      const claimed = await claimAndProcess(tx, part, rejectedOf, work);
      return () => {
        claimedMessages += claimed.messages;
        add(taken, claimed.taken);
        add(again, claimed.again);
      };
    },
  });
  // Counted once the commit is confirmed (processBatch returns only then). A row taken
  // and written again for the same reason is neither cleared nor a new reject; every other
  // row the processor wrote is a new reject (db_rejected, out_of_range, …), counted as
  // serve counts its live ones, so the rows in ingest_rejects always equal the rejects
  // counted less those cleared.
  metrics.stored.inc(undefined, result.stored);
  metrics.statuses.inc(undefined, result.statuses);
  for (const [reason, n] of taken) {
    const cleared = n - Math.min(n, again.get(reason) ?? 0);
    if (cleared > 0) metrics.rejectsCleared.inc({ reason }, cleared);
  }
  for (const [reason, n] of Object.entries(result.rejected)) {
    const fresh = n - Math.min(taken.get(reason) ?? 0, again.get(reason) ?? 0);
    if (fresh > 0) metrics.rejected.inc({ reason }, fresh);
  }
  for (const outcome of ["stored", "rejected", "skipped"] as const) {
    if (result.outcomes[outcome] > 0) {
      metrics.reprocessed.inc({ outcome }, result.outcomes[outcome]);
    }
  }
  if (claimedMessages > 0) {
    opts.log.info("re-processed rejects after a registration", {
      messages: claimedMessages,
      stored: result.outcomes.stored,
      rejected: result.outcomes.rejected,
      skipped: result.outcomes.skipped,
    });
  }
}

/** What one committed transaction of a re-processed batch took out of the dead letter. */
interface ClaimedPart {
  messages: number;
  /** Rows claimed (deleted), per reason. */
  taken: Map<string, number>;
  /** Rows of a reason a registration fixes, written again for the claimed messages. */
  again: Map<string, number>;
}

/**
 * Claims the reject rows of `part`'s messages in this transaction, writes the messages it
 * claimed, and records those that left the dead letter for good (for `trace`). Rows
 * another serve holds are skipped, rows it already took are gone: the transaction writes
 * only the messages claimed.
 */
async function claimAndProcess(
  tx: postgres.TransactionSql,
  part: readonly DecodedMessage[],
  rejectedOf: Map<DecodedMessage, RejectedMessage>,
  work: (only: readonly DecodedMessage[]) => Promise<void>,
): Promise<ClaimedPart> {
  const ids = part.flatMap((d) => rejectedOf.get(d)!.ids);
  const claimed = await tx<{ at_us: string; topic: string; reason: string }[]>`
    delete from ingest_rejects
    where id in (select id from ingest_rejects where id = any(${ids}::int8[])
                 for update skip locked)
    returning (extract(epoch from received_at) * 1000000)::int8::text as at_us, topic, reason`;
  const mine = new Set(claimed.map((c) => `${c.at_us} ${c.topic}`));
  const kept = part.map((d) => ({ m: rejectedOf.get(d)!, d }))
    .filter(({ m }) => mine.has(`${m.at_us} ${m.topic}`));
  await work(kept.map((k) => k.d));
  const ats = kept.map((k) => k.m.at_us);
  const topics = kept.map((k) => k.m.topic);
  await tx`
    insert into ingest_reprocessed (received_at, topic, reason)
    select ${timestampOfUs(tx, "k.a")}, k.t, k.r
    from unnest(${ats}::int8[], ${topics}::text[],
                ${kept.map((k) => firstReason(claimed, k.m))}::text[]) as k(a, t, r)
    where not exists (
      select 1 from ingest_rejects r
      where r.received_at = ${timestampOfUs(tx, "k.a")} and r.topic = k.t
        and r.reason = any(${FIXED_BY_REGISTRATION}))
    on conflict do nothing`;
  const [rewritten] = await tx<{ rows: string[] }[]>`
    select coalesce(array_agg(r.reason), '{}') as rows
    from unnest(${ats}::int8[], ${topics}::text[]) as k(a, t)
    join ingest_rejects r on r.received_at = ${timestampOfUs(tx, "k.a")} and r.topic = k.t
      and r.reason = any(${FIXED_BY_REGISTRATION})`;
  const taken = new Map<string, number>();
  for (const c of claimed) taken.set(c.reason, (taken.get(c.reason) ?? 0) + 1);
  const written = new Map<string, number>();
  for (const reason of rewritten.rows) written.set(reason, (written.get(reason) ?? 0) + 1);
  return { messages: kept.length, taken, again: written };
}

function firstReason(claimed: { at_us: string; topic: string; reason: string }[], m: {
  at_us: string;
  topic: string;
}): string {
  return claimed.find((c) => c.at_us === m.at_us && c.topic === m.topic)?.reason ?? "";
}

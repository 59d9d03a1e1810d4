/**
 * The writer of readings: `feed_values`, and each feed's newest reading of the batch, appended
 * to `feed_last_values_pending` (sql/018) for the mover (src/db/last_values.ts) to carry into
 * `feed_last_values` (sql/014) forward only (late or replayed data never overwrites newer);
 * feeds with a `max_silence` have their `feed_last_values` row updated in place, for the
 * silence check (src/ingest/silence_check.ts). Two ways, chosen per batch
 * by src/ingest/write/fast_or_careful.ts: the fast way is one statement that fails on any
 * row the database refuses; the careful way isolates refused rows (src/ingest/write/
 * isolation.ts), absorbs a reading already stored by its key (feed_id, created_at), and
 * tells a duplicate from a different reading that got the same key (`value_conflict`,
 * docs/delivery.md, "Duplicates and idempotence"). With `--rollups`, either way's insert
 * RETURNs the rows it stored and the same statement rolls them up (src/ingest/write/rollups.ts).
 */
import { formatTimestampUs } from "../../core/payload.ts";
import { timestampOfUs } from "../../db/timestamps.ts";
import type { Transaction } from "../../db/transaction.ts";
import { floatArrayLiteral, intArrayLiteral, textArrayLiteral } from "../pg_array.ts";
import { insertIsolated } from "./isolation.ts";
import { foldsRead, ROLLUP_RETURNING, rollupUpsert, type RollupWidths } from "./rollups.ts";
import type { RejectRow, ValueRow } from "./rows.ts";

/** A reading absorbed by the key of a stored reading with another value. */
export interface ValueConflict {
  feedId: number;
  createdAtUs: number;
  stored: string | null;
  dropped: string | null;
}

/** What became of a batch's value rows. */
export interface ValuesWritten {
  /** Rows inserted. */
  stored: number;
  /** Rows absorbed by the key of the same reading, already stored (a redelivery, a replay). */
  duplicates: number;
  /** Rows absorbed by the key of a stored reading with another value. */
  conflicts: ValueConflict[];
  /** Rows not in the database as they came (refused, or in conflict); null: none. */
  notStored: ReadonlySet<ValueRow> | null;
  /** The dead-letter rows of those: `value_conflict`, `db_rejected`. */
  rejects: RejectRow[];
  /** Rows the database refused (a feed deleted meanwhile: the feed cache may be stale). */
  refused: number;
}

/**
 * The fast way: every row inserted and each feed's last value moved forward, in one
 * statement. Throws on any row the database refuses, a stored or repeated
 * (feed_id, created_at) included; the caller rolls back and writes the batch carefully.
 */
export async function writeValuesFast(
  tx: Transaction,
  rows: ValueRow[],
  rollups: RollupWidths = null,
): Promise<ValuesWritten> {
  if (rows.length > 0) {
    const latest = latestPerFeed(rows, null);
    await (rollups
      ? tx`with stored as (${valuesInsert(tx, rows)} ${tx.unsafe(ROLLUP_RETURNING)}),
               folds as materialized (${foldsRead(tx, rollups)}),
               rolled as (${rollupUpsert(tx, "stored", "folds", rollups)})
               ${lastValueWrites(tx, latest)}
           select 1`
      : tx`with stored as (${valuesInsert(tx, rows)}) ${lastValueWrites(tx, latest)} select 1`);
  }
  return allStored(rows.length);
}

function allStored(n: number): ValuesWritten {
  return { stored: n, duplicates: 0, conflicts: [], notStored: null, rejects: [], refused: 0 };
}

/** The careful way: refused rows isolated, rows already stored absorbed and told apart. */
export async function writeValuesCarefully(
  tx: Transaction,
  rows: ValueRow[],
  rollups: RollupWidths = null,
): Promise<ValuesWritten> {
  if (rows.length === 0) return allStored(0);
  const insert = (sp: Transaction, part: ValueRow[]) => insertValueRows(sp, part, rollups);
  const { inserted, poison } = await insertIsolated(tx, rows, insert);
  const poisoned = new Set(poison.map((p) => p.row));
  const notStored = new Set(poisoned);
  const rejects: RejectRow[] = [];
  const absorbed = rows.length - inserted - poison.length;
  // Only a batch with absorbed rows pays for this second look.
  const conflicts = absorbed === 0
    ? []
    : await findConflicts(tx, poisoned.size > 0 ? rows.filter((v) => !poisoned.has(v)) : rows);
  // A different reading holds the key: this one is not stored, so it is not counted as a
  // duplicate but dead-lettered.
  for (const { row, conflict } of conflicts) {
    notStored.add(row);
    rejects.push({
      message: row.message,
      reason: "value_conflict",
      detail: `${row.feedKey}: ${formatTimestampUs(row.createdUs)} already holds another value (${
        conflict.stored?.slice(0, 40)
      }), not this one (${conflict.dropped?.slice(0, 40)})`,
    });
  }
  for (const p of poison) {
    rejects.push({ message: p.row.message, reason: "db_rejected", detail: p.detail });
  }
  const latest = latestPerFeed(rows, notStored.size > 0 ? notStored : null);
  // Rare (a redelivery, a refused row): a statement for each write is simpler than one.
  if (latest.inPlace.ids.length > 0) await tx`${lastValuesUpdate(tx, latest.inPlace)}`;
  if (latest.appended.ids.length > 0) await tx`${pendingInsert(tx, latest.appended)}`;
  return {
    stored: inserted,
    duplicates: absorbed - conflicts.length,
    conflicts: conflicts.map((c) => c.conflict),
    notStored: notStored.size > 0 ? notStored : null,
    rejects,
    refused: poison.length,
  };
}

/**
 * The value rows as the column arrays of an `unnest`, ordered by feed (then time): the
 * insert then walks `feed_values`' primary key (feed_id, created_at) from left to right, so
 * readings whose keys share a leaf page touch it one after the other. Over a large fleet
 * that halves the full-page images it writes (docs/performance.md, "Fleet scale (issue 26)").
 */
function valueColumns(unordered: ValueRow[]) {
  const rows = unordered.toSorted(byFeedThenTime);
  const n = rows.length;
  const feedIds = new Array<number>(n);
  const nums = new Array<number | null>(n);
  const texts = new Array<string | null>(n);
  const created = new Array<number>(n);
  const received = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const r = rows[i];
    feedIds[i] = r.feedId;
    nums[i] = r.value;
    texts[i] = r.text;
    created[i] = r.createdUs;
    received[i] = r.receivedUs;
  }
  return { feedIds, nums, texts, created, received };
}

/** The insert of `rows` into `feed_values`, a fragment both ways complete. */
function valuesInsert(tx: Transaction, rows: ValueRow[]) {
  const { feedIds, nums, texts, created, received } = valueColumns(rows);
  return tx`
    insert into feed_values (feed_id, value, value_text, created_at, received_at)
    select f, v, t, ${timestampOfUs(tx, "c")}, ${timestampOfUs(tx, "r")}
    from unnest(${intArrayLiteral(feedIds)}::int8[], ${floatArrayLiteral(nums)}::float8[],
                ${textArrayLiteral(texts)}::text[], ${intArrayLiteral(created)}::int8[],
                ${intArrayLiteral(received)}::int8[]) as x(f, v, t, c, r)`;
}

/**
 * Inserts the rows a key does not absorb; with rollups, those rows (RETURNING) are rolled
 * up in the same statement, so a savepoint that refuses them takes their rollups too.
 */
async function insertValueRows(
  tx: Transaction,
  rows: ValueRow[],
  rollups: RollupWidths,
): Promise<number> {
  if (!rollups) {
    const res = await tx`${valuesInsert(tx, rows)} on conflict do nothing`;
    return res.count;
  }
  const [{ n }] = await tx<{ n: number }[]>`
    with stored as (${valuesInsert(tx, rows)} on conflict do nothing
                    ${tx.unsafe(ROLLUP_RETURNING)}),
         folds as materialized (${foldsRead(tx, rollups)}),
         rolled as (${rollupUpsert(tx, "stored", "folds", rollups)})
    select count(*)::int as n from stored`;
  return n;
}

function byFeedThenTime(a: ValueRow, b: ValueRow): number {
  return a.feedId - b.feedId || a.createdUs - b.createdUs;
}

/** Feeds' newest rows: the arrays of a last-value write, by feed id. */
interface FeedValues {
  ids: number[];
  vals: string[];
  ats: number[];
}

/** Each feed's newest row, appended or (a feed with a `max_silence`) updated in place. */
interface LatestValues {
  appended: FeedValues;
  inPlace: FeedValues;
}

function latestPerFeed(rows: ValueRow[], exclude: ReadonlySet<ValueRow> | null): LatestValues {
  const latest = new Map<number, ValueRow>();
  for (const r of rows) {
    if (exclude?.has(r)) continue;
    const current = latest.get(r.feedId);
    if (!current || current.createdUs < r.createdUs) latest.set(r.feedId, r);
  }
  const appended: FeedValues = { ids: [], vals: [], ats: [] };
  const inPlace: FeedValues = { ids: [], vals: [], ats: [] };
  // In key order, as the insert (valueColumns): the update probes feed_last_values' primary
  // key once per feed, left to right, and locks the rows in the order every batch does.
  for (const r of [...latest.values()].sort(byFeedThenTime)) {
    const to = r.watched ? inPlace : appended;
    to.ids.push(r.feedId);
    to.vals.push(r.text ?? String(r.value));
    to.ats.push(r.createdUs);
  }
  return { appended, inPlace };
}

/**
 * The last-value writes, as CTEs that follow others (`, name as (...)`): data-modifying
 * CTEs run to completion whether or not the statement reads them. Each is left out when it
 * has no row, so a batch without watched feeds plans no update at all.
 */
function lastValueWrites(tx: Transaction, { appended, inPlace }: LatestValues) {
  const update = inPlace.ids.length > 0
    ? tx`, in_place as (${lastValuesUpdate(tx, inPlace)})`
    : tx``;
  const append = appended.ids.length > 0
    ? tx`, appended as (${pendingInsert(tx, appended)})`
    : tx``;
  return tx`${update}${append}`;
}

/**
 * Moves a watched feed's last value forward in place: late or replayed data never
 * overwrites newer. One row per feed, in the narrow `feed_last_values` (sql/014), which
 * every feed has from its creation: an update, HOT, never an insert.
 */
function lastValuesUpdate(tx: Transaction, { ids, vals, ats }: FeedValues) {
  return tx`
    update feed_last_values l
    set value = x.v, at = x.at
    from (select id, v, ${timestampOfUs(tx, "c")} as at
          from unnest(${intArrayLiteral(ids)}::int8[], ${textArrayLiteral(vals)}::text[],
                      ${intArrayLiteral(ats)}::int8[]) as u(id, v, c)) x
    where l.feed_id = x.id and (l.at is null or l.at < x.at)`;
}

/**
 * Appends each feed's newest reading to `feed_last_values_pending` (sql/018): no index, no
 * lookup. The mover (src/db/last_values.ts) carries them forward in bulk.
 */
function pendingInsert(tx: Transaction, { ids, vals, ats }: FeedValues) {
  return tx`
    insert into feed_last_values_pending (feed_id, value, at)
    select id, v, ${timestampOfUs(tx, "c")}
    from unnest(${intArrayLiteral(ids)}::int8[], ${textArrayLiteral(vals)}::text[],
                ${intArrayLiteral(ats)}::int8[]) as u(id, v, c)`;
}

/**
 * The rows of `rows` whose key holds a stored reading with another value: absorbed by
 * `on conflict do nothing` although they are different readings. One index lookup per
 * row, in one statement; a row inserted by this batch finds itself and its own value.
 */
async function findConflicts(
  tx: Transaction,
  rows: ValueRow[],
): Promise<{ row: ValueRow; conflict: ValueConflict }[]> {
  const found = await tx<
    {
      i: string;
      f: string;
      c: string;
      v: number | null;
      t: string | null;
      sv: number | null;
      st: string | null;
    }[]
  >`
    select x.i, x.f, x.c, x.v, x.t, fv.value as sv, fv.value_text as st
    from unnest(${intArrayLiteral(rows.map((r) => r.feedId))}::int8[],
                ${floatArrayLiteral(rows.map((r) => r.value))}::float8[],
                ${textArrayLiteral(rows.map((r) => r.text))}::text[],
                ${intArrayLiteral(rows.map((r) => r.createdUs))}::int8[])
      with ordinality as x(f, v, t, c, i)
    join feed_values fv on fv.feed_id = x.f and fv.created_at = ${timestampOfUs(tx, "x.c")}
    where fv.value is distinct from x.v or fv.value_text is distinct from x.t`;
  return found.map((r) => ({
    row: rows[Number(r.i) - 1],
    conflict: {
      feedId: Number(r.f),
      createdAtUs: Number(r.c),
      stored: r.st ?? (r.sv === null ? null : String(r.sv)),
      dropped: r.t ?? (r.v === null ? null : String(r.v)),
    },
  }));
}

/**
 * The cost of a verified commit (src/db/transaction.ts) per batch: the same batch of
 * readings (the insert of the processor's fast way) committed with `sql.begin` alone, as
 * feedline did before, and with `confirmedTransaction`, which ends it with `commit and
 * chain` on the simple protocol and checks the command tag. Rounds alternate the order
 * (old, new, new, old, ...) so a drift in the machine's load falls on both alike; the cost
 * is the median of the per-round differences; transactions of one row show the commit
 * without the noise of the batch itself. The pool has serve's default size (4), as
 * the empty transaction `sql.begin` still commits after the verified one runs on its
 * connection while the next batch takes another.
 */
import postgres from "postgres";
import { confirmedTransaction } from "../src/db/transaction.ts";
import type { Load, SummaryRow } from "./rows.ts";
import { fmtRate } from "./text.ts";

/** One comparison: median µs per transaction each way, and of their paired difference. */
export interface CommitComparison {
  rounds: number;
  rows: number;
  /** `sql.begin` alone. */
  beginUs: number;
  verifiedUs: number;
  /** Median of (verified − begin) per round. */
  costUs: number;
}

/**
 * What the commit phase measured: batches of `batchSize` readings, and transactions of
 * one row, where the batch's own time (and its noise on a busy machine) does not hide the
 * cost of the commit itself. The commit does the same whatever the batch holds, so the
 * cost per batch is the one-row difference; the batches show nothing else changed.
 */
export interface CommitCost {
  batch: CommitComparison;
  oneRow: CommitComparison;
  batchSize: number;
  /** µs per batch: the one-row paired difference. */
  costUs: number;
  /** µs per message in a batch of `batchSize`. */
  costUsPerMessage: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Runs the comparison on batches of `batchSize` rows and on one-row transactions. */
export async function commitCostPhase(
  url: string,
  feedIds: number[],
  opts: { rounds: number; batchSize: number },
): Promise<CommitCost> {
  const sql = postgres(url, { max: 4, onnotice: () => {} });
  try {
    const batch = await compare(sql, feedIds, opts.batchSize, opts.rounds);
    const oneRow = await compare(sql, feedIds, 1, opts.rounds * 5);
    return {
      batch,
      oneRow,
      batchSize: opts.batchSize,
      costUs: oneRow.costUs,
      costUsPerMessage: Number((oneRow.costUs / opts.batchSize).toFixed(4)),
    };
  } finally {
    await sql.end({ timeout: 5 });
  }
}

async function compare(
  sql: postgres.Sql,
  feedIds: number[],
  rows: number,
  rounds: number,
): Promise<CommitComparison> {
  let next = Date.now() * 1000;
  const insert = (tx: postgres.TransactionSql) => {
    const f = new Array<number>(rows);
    const v = new Array<number>(rows);
    const c = new Array<number>(rows);
    for (let k = 0; k < rows; k++) {
      f[k] = feedIds[k % feedIds.length];
      v[k] = k;
      c[k] = ++next;
    }
    return tx`
      insert into feed_values (feed_id, value, value_text, created_at, received_at)
      select f, v, null, to_timestamp(0) + c * interval '1 microsecond',
             to_timestamp(0) + c * interval '1 microsecond'
      from unnest(${f}::int8[], ${v}::float8[], ${c}::int8[]) as x(f, v, c)`;
  };
  const timed = async (run: () => Promise<unknown>) => {
    const started = performance.now();
    await run();
    return (performance.now() - started) * 1000;
  };
  const old = () => timed(() => sql.begin((tx) => insert(tx)));
  const verified = () => timed(() => confirmedTransaction(sql, (tx) => insert(tx)));
  for (let i = 0; i < 20; i++) await (i % 2 ? old() : verified()); // warm-up
  const begin: number[] = [];
  const confirmed: number[] = [];
  const diffs: number[] = [];
  for (let i = 0; i < rounds; i++) {
    let a: number, b: number;
    if (i % 2 === 0) {
      a = await old();
      b = await verified();
    } else {
      b = await verified();
      a = await old();
    }
    begin.push(a);
    confirmed.push(b);
    diffs.push(b - a);
  }
  return {
    rounds,
    rows,
    beginUs: Math.round(median(begin)),
    verifiedUs: Math.round(median(confirmed)),
    costUs: Math.round(median(diffs)),
  };
}

/**
 * Prints the cost, and its share of each QoS 1 serve row of the run (flat out): the µs a
 * message costs more, over the µs a message took at that rate.
 */
export function printCommitCost(
  cost: CommitCost & Load,
  qos: 0 | 1,
  rows: SummaryRow[],
): void {
  const loads = (l: number[]) => l.map((x) => x.toFixed(2)).join(" ");
  const line = (c: CommitComparison, what: string) =>
    `  ${what}: median ${c.beginUs} µs with sql.begin alone, ${c.verifiedUs} µs verified, ` +
    `paired difference ${c.costUs} µs (${c.rounds} rounds, alternating)`;
  console.log(
    `\ncommit verification (load ${loads(cost.loadBefore)} → ${loads(cost.loadAfter)}):\n` +
      `${line(cost.batch, `batches of ${cost.batchSize} readings`)}\n` +
      `${line(cost.oneRow, "transactions of one row")}\n` +
      `  cost: ${cost.costUs} µs per batch (the one-row difference: the commit does the same ` +
      `whatever the batch holds), ${cost.costUsPerMessage} µs per message in batches of ` +
      `${cost.batchSize}`,
  );
  const flatOut = rows.filter((r) => r.phase === "serve" && r.perSecond !== undefined);
  if (qos !== 1 || flatOut.length === 0) {
    console.log("  share of QoS 1 flat-out throughput: needs a QoS 1 serve phase in the run");
    return;
  }
  for (const r of flatOut) {
    const usPerMessage = 1e6 / r.perSecond!;
    console.log(
      `  = ${((cost.costUsPerMessage / usPerMessage) * 100).toFixed(3)}% of ${r.name} ` +
        `throughput (${usPerMessage.toFixed(1)} µs per message at ${fmtRate(r.perSecond!)}/s)`,
    );
  }
}

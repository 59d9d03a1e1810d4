/**
 * The books audit: what `serve` says it wrote must be what the tables gained while it ran
 * (docs/delivery.md, "Where every message ends"). Every test that runs serve against a
 * database ends with it, so a count that does not match the rows fails the test that
 * shows it, whatever that test is about.
 *
 * What must equal what, for the serves of one database between a baseline taken before
 * the first of them started and the moment the last of them stopped:
 *
 * - readings: Σ `readingsStored` (rows each commit inserted) = rows `feed_values` gained;
 * - status events: Σ `statusEventsRecorded` = rows `device_status_events` gained;
 * - rejects: Σ `rejectsByReason[r]` = rows `ingest_rejects` gained with reason r, for
 *   every r (one row per message and reason: a bulk message may have several reasons);
 * - messages: Σ outcome `rejected` ≤ messages with a new reject row ≤ Σ (`rejected` +
 *   `stored`): every message counted rejected has a row, and a message with a row was
 *   counted rejected or stored (a bulk message with one stored reading is `stored`);
 * - each serve's final line balances: received = stored + rejected + skipped + dropped +
 *   discarded + queued + in flight, with nothing queued or in flight.
 *
 * A reading absorbed by the key of a different stored reading is dead-lettered as
 * `value_conflict` (src/ingest/write/values.ts), so the reject check above covers it.
 *
 * Two cases allow only a weaker check, `rows gained ≥ what was reported`, never hiding
 * rows that were counted but are missing:
 * - a serve the test SIGKILLed reported nothing, but its commits are in the tables;
 * - a serve whose shutdown timeout abandoned a batch (`unwritten` > 0): that batch may
 *   still commit after it was counted as dropped or discarded (src/ingest/pipeline.ts).
 *
 * In-process serves (test/support/serve.ts) are audited by their `stop()`; serves run as
 * child processes are audited by the test with {@linkcode openBooks} before they start and
 * `verify()` after they exit, from their final "stopped" JSON line; a serve with its own
 * embedded database is audited from its data directory ({@linkcode verifyEmbeddedBooks}).
 *
 * @module
 */
import postgres from "postgres";
import { openDatabase } from "../../src/db/database.ts";
import type { AccountingTerms } from "../../src/ingest/accounting.ts";
import type { Logger } from "../../src/log.ts";

/** The books of a test do not match its tables. */
export class AuditError extends Error {
  override name = "AuditError";
}

/** One serve as the audit sees it. */
export interface AuditedServe {
  /** Its name in the audit's messages (default: "serve N"). */
  name?: string;
  /**
   * The fields of its final "stopped" line; null when it wrote none (SIGKILLed, or a start
   * that failed: such a serve is audited as having written nothing).
   */
  stopped: Record<string, unknown> | null;
  /** The test SIGKILLed it: it could not report (the checks become inequalities). */
  killed?: boolean;
  /** It failed to start: it must have written nothing. */
  failedStart?: boolean;
}

/** A serve child process: its JSON log lines, and whether the test SIGKILLed it. */
export function auditedProcess(
  p: { logs: Record<string, unknown>[]; killed?: boolean },
  name?: string,
): AuditedServe {
  return { name, stopped: p.logs.find((l) => l.msg === "stopped") ?? null, killed: p.killed };
}

/** What one serve counted, from its final line: the accounting terms and what they wrote. */
interface Reported extends Omit<AccountingTerms, "balanced"> {
  name: string;
  unwritten: number;
  readingsStored: number;
  statusEventsRecorded: number;
  rejectsByReason: Record<string, number>;
  /** Rows its re-processing after a registration deleted (src/ingest/reprocess.ts). */
  rejectsClearedByReason: Record<string, number>;
}

/** What the tables gained since the baseline. */
export interface Gained {
  readings: number;
  statusEvents: number;
  rejectsByReason: Record<string, number>;
  /** Distinct messages (receive times) among the new reject rows. */
  rejectedMessages: number;
}

/** Rows written by the test itself (not by serve) while serve ran, e.g. by `replay`. */
export interface OtherWrites {
  readings?: number;
  statusEvents?: number;
  rejectsByReason?: Record<string, number>;
}

/** What a test tells the audit beyond what serve reported. */
export interface VerifyOptions {
  /** Rows the test wrote itself meanwhile. */
  otherWrites?: OtherWrites;
}

const NUMBERS = [
  "received",
  "stored",
  "rejected",
  "skipped",
  "dropped",
  "discarded",
  "queued",
  "inFlight",
  "unwritten",
  "readingsStored",
  "statusEventsRecorded",
] as const;

function reportedOf(serve: AuditedServe, name: string, problems: string[]): Reported | null {
  if (serve.failedStart) {
    const zero = Object.fromEntries(NUMBERS.map((k) => [k, 0]));
    return {
      ...zero,
      name,
      rejectsByReason: {},
      rejectsClearedByReason: {},
    } as unknown as Reported;
  }
  const line = serve.stopped;
  if (!line) {
    if (!serve.killed) {
      problems.push(
        `${name} wrote no final "stopped" line (it must log at level info or lower, and stop ` +
          "cleanly; a serve the test SIGKILLs must be marked killed)",
      );
    }
    return null;
  }
  const r: Record<string, unknown> = { name };
  for (const k of NUMBERS) {
    if (typeof line[k] !== "number") {
      problems.push(`${name}'s "stopped" line has no number "${k}": ${JSON.stringify(line)}`);
      return null;
    }
    r[k] = line[k];
  }
  const byReason = line.rejectsByReason;
  if (typeof byReason !== "object" || byReason === null) {
    problems.push(`${name}'s "stopped" line has no "rejectsByReason": ${JSON.stringify(line)}`);
    return null;
  }
  r.rejectsByReason = byReason;
  r.rejectsClearedByReason = (line.rejectsClearedByReason ?? {}) as Record<string, number>;
  return r as unknown as Reported;
}

/**
 * The discrepancies between what `serves` reported and what the tables `gained` (empty:
 * the books match). Pure; see the module doc for what is compared.
 */
export function compareBooks(
  serves: AuditedServe[],
  gained: Gained,
  opts: VerifyOptions = {},
): string[] {
  const other = opts.otherWrites ?? {};
  const problems: string[] = [];
  const reported: Reported[] = [];
  serves.forEach((s, i) => {
    const r = reportedOf(s, s.name ?? `serve ${i + 1}`, problems);
    if (r) reported.push(r);
  });
  for (const r of reported) {
    const accounted = r.stored + r.rejected + r.skipped + r.dropped + r.discarded + r.queued +
      r.inFlight;
    if (accounted !== r.received) {
      problems.push(
        `${r.name}'s final accounting does not balance: received ${r.received}, but stored ` +
          `${r.stored} + rejected ${r.rejected} + skipped ${r.skipped} + dropped ${r.dropped} + ` +
          `discarded ${r.discarded} + queued ${r.queued} + in flight ${r.inFlight} = ${accounted}`,
      );
    }
    if (r.queued !== 0 || r.inFlight !== 0) {
      problems.push(`${r.name} stopped with ${r.queued} queued and ${r.inFlight} in flight`);
    }
  }
  const killed = serves.filter((s) => !s.stopped && !s.failedStart && s.killed).length;
  const abandoned = reported.filter((r) => r.unwritten > 0).length;
  // Rows serve did not report may be in the tables (see the module doc): then only
  // "at least what was reported" can be checked.
  const exact = killed === 0 && abandoned === 0;
  const why = exact ? "" : ` (at least: ${
    [
      killed ? `${killed} serve(s) SIGKILLed reported nothing` : "",
      abandoned ? `${abandoned} serve(s) abandoned a batch at the shutdown timeout` : "",
    ].filter(Boolean).join("; ")
  })`;
  const check = (what: string, counted: number, rows: number) => {
    if (exact ? rows !== counted : rows < counted) {
      problems.push(
        `${what}: serve counted ${counted}, the table gained ${rows}${exact ? "" : why}`,
      );
    }
  };
  const sum = (f: (r: Reported) => number) => reported.reduce((n, r) => n + f(r), 0);
  check(
    "feed_values (readingsStored)",
    sum((r) => r.readingsStored) + (other.readings ?? 0),
    gained.readings,
  );
  check(
    "device_status_events (statusEventsRecorded)",
    sum((r) => r.statusEventsRecorded) + (other.statusEvents ?? 0),
    gained.statusEvents,
  );
  const reasons = new Set([
    ...Object.keys(gained.rejectsByReason),
    ...reported.flatMap((r) => Object.keys(r.rejectsByReason)),
    ...Object.keys(other.rejectsByReason ?? {}),
  ]);
  for (const reason of [...reasons].sort()) {
    check(
      `ingest_rejects{reason="${reason}"} (rejectsByReason)`,
      sum((r) => (r.rejectsByReason[reason] ?? 0) - (r.rejectsClearedByReason[reason] ?? 0)) +
        (other.rejectsByReason?.[reason] ?? 0),
      gained.rejectsByReason[reason] ?? 0,
    );
  }
  // A message whose rows re-processing cleared has none any more (one row per message
  // and reason: a cleared row is at most one message).
  const cleared = sum((r) => Object.values(r.rejectsClearedByReason).reduce((a, b) => a + b, 0));
  const rejected = sum((r) => r.rejected);
  if (gained.rejectedMessages < rejected - cleared) {
    problems.push(
      `messages counted rejected: ${rejected}, but only ${gained.rejectedMessages} ` +
        "message(s) have a new row in ingest_rejects",
    );
  }
  const storedOrRejected = rejected + sum((r) => r.stored);
  if (exact && !other.rejectsByReason && gained.rejectedMessages > storedOrRejected) {
    problems.push(
      `${gained.rejectedMessages} message(s) have a new row in ingest_rejects, but serve ` +
        `counted only ${storedOrRejected} messages stored or rejected`,
    );
  }
  return problems;
}

/** Where the tables stood when the first serve started. */
interface Baseline {
  readings: number;
  /** Highest id of device_status_events and ingest_rejects (identity columns). */
  statusEventId: string;
  rejectId: string;
}

const ZERO: Baseline = { readings: 0, statusEventId: "0", rejectId: "0" };

function connect(url: string): postgres.Sql {
  // No named statements: the audit must work through whatever the test serves through.
  return postgres(url, { max: 1, prepare: false, onnotice: () => {} });
}

async function baselineOf(sql: postgres.Sql): Promise<Baseline> {
  // A database serve has yet to migrate holds none of these rows.
  const [{ migrated }] = await sql<{ migrated: boolean }[]>`
    select to_regclass('feed_values') is not null as migrated`;
  if (!migrated) return { readings: 0, statusEventId: "0", rejectId: "0" };
  const [row] = await sql<{ readings: string; s: string; r: string }[]>`
    select (select count(*) from feed_values)::text as readings,
           (select coalesce(max(id), 0) from device_status_events)::text as s,
           (select coalesce(max(id), 0) from ingest_rejects)::text as r`;
  return { readings: Number(row.readings), statusEventId: row.s, rejectId: row.r };
}

async function gainedSince(sql: postgres.Sql, base: Baseline): Promise<Gained> {
  // feed_values has no identity column: its gain is a difference of counts, which also
  // shows rows deleted behind serve's back. The two others are read above their
  // baseline ids, so the rows themselves are known (by reason, by message).
  const [row] = await sql<{ readings: string; events: string; messages: string }[]>`
    select (select count(*) from feed_values)::text as readings,
           (select count(*) from device_status_events where id > ${base.statusEventId}::int8)::text
             as events,
           (select count(distinct received_at) from ingest_rejects
            where id > ${base.rejectId}::int8)::text as messages`;
  const byReason = await sql<{ reason: string; n: string }[]>`
    select reason, count(*)::text as n from ingest_rejects
    where id > ${base.rejectId}::int8 group by reason`;
  return {
    readings: Number(row.readings) - base.readings,
    statusEvents: Number(row.events),
    rejectsByReason: Object.fromEntries(byReason.map((r) => [r.reason, Number(r.n)])),
    rejectedMessages: Number(row.messages),
  };
}

function fail(problems: string[], serves: AuditedServe[], gained: Gained, where: string): never {
  const lines = serves.map((s, i) =>
    `  ${s.name ?? `serve ${i + 1}`}: ${
      s.failedStart
        ? "failed to start"
        : s.stopped
        ? JSON.stringify(s.stopped)
        : s.killed
        ? "SIGKILLed"
        : "no final line"
    }`
  );
  throw new AuditError(
    `serve's books do not match ${where}:\n${problems.map((p) => `  - ${p}`).join("\n")}\n` +
      `what each serve reported:\n${lines.join("\n")}\nwhat the tables gained: ` +
      JSON.stringify(gained),
  );
}

/** The books of one database, from a baseline on. */
export interface Books {
  /**
   * Compares what `serves` (every serve that ran against the database since the
   * baseline, all stopped by now) reported with what the tables gained; throws an
   * `AuditError` naming each difference.
   */
  verify(serves: AuditedServe[], opts?: VerifyOptions): Promise<void>;
}

/**
 * Takes the baseline of the database at `databaseUrl` (direct, not through a proxy the
 * test may cut): call it before the first serve starts.
 */
export async function openBooks(databaseUrl: string): Promise<Books> {
  const sql = connect(databaseUrl);
  let base: Baseline;
  try {
    base = await baselineOf(sql);
  } finally {
    await sql.end();
  }
  return {
    async verify(serves, opts) {
      const sql = connect(databaseUrl);
      let gained: Gained;
      try {
        gained = await gainedSince(sql, base);
      } finally {
        await sql.end();
      }
      const problems = compareBooks(serves, gained, opts);
      if (problems.length > 0) fail(problems, serves, gained, "the database");
    },
  };
}

/**
 * Audits serves that ran with the embedded database in `dataDir` (its first use: the
 * baseline is an empty database), once all of them have exited: opens it the way serve
 * does, which also makes sure none of them still holds it.
 */
export async function verifyEmbeddedBooks(
  dataDir: string,
  serves: AuditedServe[],
  opts?: VerifyOptions,
): Promise<void> {
  const db = await openDatabase({
    dataDir,
    embeddedPort: 0,
    poolSize: 1,
    migrate: false,
    command: "the books audit of a test",
  });
  let gained: Gained;
  try {
    gained = await gainedSince(db.sql, ZERO);
  } finally {
    await db.close();
  }
  const problems = compareBooks(serves, gained, opts);
  if (problems.length > 0) fail(problems, serves, gained, `the embedded database in ${dataDir}`);
}

/** A logger that passes everything to `log` and keeps the fields of the "stopped" line. */
export function tapStopped(
  log: Logger,
): { log: Logger; stopped(): Record<string, unknown> | null } {
  let stopped: Record<string, unknown> | null = null;
  return {
    log: {
      debug: (m, f) => log.debug(m, f),
      info: (m, f) => {
        if (m === "stopped") stopped = { msg: m, ...f };
        log.info(m, f);
      },
      warn: (m, f) => log.warn(m, f),
      error: (m, f) => log.error(m, f),
    },
    stopped: () => stopped,
  };
}

/** How an in-process serve is audited. */
export type AuditOption =
  /** Against this database (direct, not a proxy or pooler the test may cut). */
  | { databaseUrl: string }
  /**
   * Not audited, for a test that deliberately breaks the books; `skip` says why. A serve
   * audited at the same time against the same database would see its rows: opt them all out.
   */
  | { skip: string };

/** The serves running in-process against one database now, audited together. */
interface Ledger {
  books: Books;
  /** Serves started, and running now. */
  started: number;
  running: number;
  serves: AuditedServe[];
  skip: string | null;
}

const ledgers = new Map<string, Promise<Ledger>>();

/**
 * Starts an in-process serve through `start` (given the logger to use) and returns it with
 * a `stop()` that, once the last serve against the same database has stopped, verifies
 * the books of all of them (the baseline is taken before the first started). A start that
 * fails is audited too: it must have written nothing.
 */
export async function startAudited<T extends { stop(): Promise<void> }>(
  audit: AuditOption,
  log: Logger,
  start: (log: Logger) => Promise<T>,
): Promise<T> {
  const key = "databaseUrl" in audit ? audit.databaseUrl : null;
  if (key === null) return await start(log);
  let opening = ledgers.get(key);
  if (!opening) {
    opening = openBooks(key).then((books) => ({
      books,
      started: 0,
      running: 0,
      serves: [],
      skip: null,
    }));
    ledgers.set(key, opening);
    opening.catch(() => ledgers.delete(key));
  }
  const ledger = await opening;
  ledger.running++;
  const name = `serve ${++ledger.started}`;
  const tap = tapStopped(log);
  const leave = async (serve: AuditedServe, error?: unknown) => {
    ledger.serves.push(serve);
    if (--ledger.running > 0) return;
    ledgers.delete(key);
    if (ledger.skip !== null) return;
    try {
      await ledger.books.verify(ledger.serves);
    } catch (e) {
      if (error && e instanceof AuditError) {
        throw new AuditError(`${e.message}\n(the start failed with: ${error})`, { cause: error });
      }
      throw e;
    }
  };
  let running: T;
  try {
    running = await start(tap.log);
  } catch (error) {
    await leave({ name, stopped: null, failedStart: true }, error);
    throw error;
  }
  let stopping: Promise<void> | null = null;
  return {
    ...running,
    stop: () =>
      stopping ??= (async () => {
        try {
          await running.stop();
        } catch (error) {
          // It could not report: the serves with it are not verified.
          ledger.skip = `${name} failed to stop: ${error}`;
          await leave({ name, stopped: null, killed: true });
          throw error;
        }
        await leave({ name, stopped: tap.stopped() });
      })(),
  };
}

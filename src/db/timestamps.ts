/**
 * Times travel between feedline and PostgreSQL as µs since the Unix epoch in int8: exact,
 * where a float of seconds would lose the last digit and two readings a microsecond apart
 * could collide (receive times are unique to the µs, src/clock.ts).
 */
import type postgres from "postgres";

/**
 * `to_timestamp(0) + <us> * interval '1 microsecond'`: µs since the epoch as a
 * timestamptz, exactly. `us` is a column of the query, written in our own code (never
 * input: it goes into the SQL text), or a fragment such as `` sql`${us}::int8` ``.
 *
 * @example
 * ```ts
 * await tx`insert into t (at) select ${timestampOfUs(tx, "a")} from unnest(${ats}::int8[]) as x(a)`;
 * ```
 */
export function timestampOfUs(
  sql: postgres.Sql | postgres.TransactionSql,
  us: string | postgres.Fragment,
): postgres.Fragment {
  const operand = typeof us === "string" ? sql.unsafe(us) : us;
  return sql`to_timestamp(0) + ${operand} * interval '1 microsecond'`;
}

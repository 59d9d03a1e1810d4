/**
 * Reading and writing the benchmark's numbers as text: Prometheus samples in, rates out.
 * A leaf: the phases and the summary import it, and it imports nothing of ours.
 */

/** Messages/s with thousands separators. */
export function fmtRate(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** Sums every sample of `name` in Prometheus text (serve's /metrics). */
export function metric(text: string, name: string): number {
  let sum = 0;
  const re = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "gm");
  for (const m of text.matchAll(re)) sum += Number(m[1]);
  return sum;
}

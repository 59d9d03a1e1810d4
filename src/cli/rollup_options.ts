/**
 * Rollup widths (`--rollups 1m,1h,1d`) and tiered retention (`--retention
 * raw=30d,1h=2y,1d=forever`), parsed once at start (docs/operations.md, "Rollups").
 * Pure: the processor and src/db/rollups.ts get PostgreSQL intervals and milliseconds.
 */
import { z } from "zod";
import { option } from "./options.ts";

/** One bucket width of `feed_rollups`. */
export interface RollupWidth {
  /** As written: `1m`, `1h`, `1d`. */
  label: string;
  /** As PostgreSQL reads it: `1 minutes`, `1 hours`, `1 days`. */
  interval: string;
  ms: number;
}

const WIDTH_UNITS = {
  s: { name: "seconds", ms: 1000 },
  m: { name: "minutes", ms: 60_000 },
  h: { name: "hours", ms: 3_600_000 },
  d: { name: "days", ms: 86_400_000 },
  w: { name: "days", ms: 604_800_000 },
} as const;

/** `30s`, `1m`, `5m`, `1h`, `1d`, `1w` → a width; null for anything else. */
export function parseRollupWidth(text: string): RollupWidth | null {
  const m = /^(\d{1,6})(s|m|h|d|w)$/.exec(text.trim());
  if (!m || Number(m[1]) === 0) return null;
  const n = Number(m[1]);
  const unit = WIDTH_UNITS[m[2] as keyof typeof WIDTH_UNITS];
  const count = m[2] === "w" ? n * 7 : n;
  return { label: `${n}${m[2]}`, interval: `${count} ${unit.name}`, ms: n * unit.ms };
}

/** `1m,1h,1d` → widths (distinct, shortest first); a string saying what is wrong otherwise. */
export function parseRollupWidths(text: string): RollupWidth[] | string {
  const parts = text.split(",").map((p) => p.trim()).filter((p) => p !== "");
  if (parts.length === 0) return "one or more widths, e.g. 1m,1h,1d";
  const widths = new Map<number, RollupWidth>();
  for (const p of parts) {
    const w = parseRollupWidth(p);
    if (!w) return `"${p}" is not a width: a number with s, m, h, d or w (1m,1h,1d)`;
    widths.set(w.ms, w);
  }
  const sorted = [...widths.values()].sort((a, b) => a.ms - b.ms);
  // Coarse widths are folded from a finer one (src/db/rollup_folds.ts, the largest that
  // divides it: src/db/rollups.ts foldSourceMs): each must be a whole number of one, so
  // that its buckets are unions of the finer buckets.
  for (const w of sorted.slice(1)) {
    if (!sorted.some((x) => x.ms < w.ms && w.ms % x.ms === 0)) {
      const finer = sorted.filter((x) => x.ms < w.ms).map((x) => x.label).join(", ");
      return `${w.label} is not a multiple of a finer width (${finer}): coarse widths are ` +
        "folded from finer ones";
    }
  }
  return sorted;
}

const rollupsSchema = z.string().optional().transform((v, ctx) => {
  if (v === undefined || v.trim().toLowerCase() === "off") return null;
  const widths = parseRollupWidths(v);
  if (typeof widths === "string") {
    ctx.addIssue({ code: "custom", message: widths });
    return z.NEVER;
  }
  return widths;
});

/** `--rollups`: serve and replay (src/ingest/write/rollups.ts), and `feedline rollups`. */
export const rollupsOption = option({
  flag: "rollups",
  env: "FEEDLINE_ROLLUPS",
  schema: rollupsSchema,
  defaultText: "off",
  doc: "Keep feed_rollups (count, min, max, sum, last per feed and bucket) of these widths, " +
    "e.g. 1m,1h,1d: the finest in each batch's transaction, each coarser one (a multiple of " +
    "a finer one) folded from it once its bucket closes (docs/operations.md#rollups).",
});

/** How long one tier keeps its data (null: forever). */
export interface RollupRetention {
  width: RollupWidth;
  keepMs: number | null;
}

/** The value of `--retention`: raw partitions, and rollups per width. */
export interface RetentionTiers {
  /** feed_values partitions older than this are dropped; null: kept. */
  rawMs: number | null;
  rollups: RollupRetention[];
}

const KEEP_UNITS = { h: 3_600_000, d: 86_400_000, w: 604_800_000, y: 365 * 86_400_000 };

/** `off`/`forever`, or a number with h, d, w or y (a year is 365 days); NaN if neither. */
export function parseKeep(text: string): number | null {
  const t = text.trim().toLowerCase();
  if (t === "off" || t === "forever" || t === "0") return null;
  const m = /^(\d+)\s*(h|d|w|y)$/.exec(t);
  if (!m || Number(m[1]) === 0) return NaN;
  return Number(m[1]) * KEEP_UNITS[m[2] as keyof typeof KEEP_UNITS];
}

/**
 * `90d` (raw only, as before) or tiers `raw=30d,1h=2y,1d=forever`: a tier not named is
 * kept forever. A string saying what is wrong otherwise.
 */
export function parseRetentionTiers(text: string): RetentionTiers | string {
  if (!text.includes("=")) {
    const ms = parseKeep(text);
    if (Number.isNaN(ms)) return "off, a number with h, d, w or y (90d), or tiers raw=30d,1h=2y";
    return { rawMs: ms, rollups: [] };
  }
  const tiers: RetentionTiers = { rawMs: null, rollups: [] };
  const seen = new Set<string>();
  for (const part of text.split(",").map((p) => p.trim()).filter((p) => p !== "")) {
    const [key, value, extra] = part.split("=").map((s) => s.trim());
    if (value === undefined || extra !== undefined) return `"${part}" is not tier=age (1h=2y)`;
    const keep = parseKeep(value);
    if (Number.isNaN(keep)) {
      return `"${part}": the age is forever or a number with h, d, w or y (a year is 365 days)`;
    }
    const width = key.toLowerCase() === "raw" ? null : parseRollupWidth(key);
    if (key.toLowerCase() !== "raw" && !width) {
      return `"${part}": the tier is raw or a rollup width (1m, 1h, 1d)`;
    }
    const id = width ? String(width.ms) : "raw";
    if (seen.has(id)) return `"${key}" is named twice`;
    seen.add(id);
    if (width) tiers.rollups.push({ width, keepMs: keep });
    else tiers.rawMs = keep;
  }
  return tiers;
}

/** The zod schema of `--retention`. */
export const retentionSchema = z.string().default("off").transform((v, ctx) => {
  const tiers = parseRetentionTiers(v);
  if (typeof tiers === "string") {
    ctx.addIssue({ code: "custom", message: tiers });
    return z.NEVER;
  }
  return tiers;
});
